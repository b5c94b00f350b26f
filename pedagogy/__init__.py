"""pedagogy: multi-agent teacher-student simulation.

The front door: the public API is re-exported here. Subpackages: domains, backends, agents,
graphs, memory, training.
"""

from pedagogy.errors import (
    BackendError,
    ConfigError,
    ModelLoadError,
    PedagogyError,
    StoreError,
    TrainingError,
    UnknownNameError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "ModelLoadError",
    "PedagogyError",
    "StoreError",
    "TrainingError",
    "UnknownNameError",
    "load_config",
    "run_loop",
]


def __getattr__(name: str):
    # Lazy: importing pedagogy must not pull in torch, langgraph or litellm.
    if name == "load_config":
        from pedagogy.config import load_config

        return load_config
    if name == "run_loop":
        from pedagogy.runner import run_loop

        return run_loop
    if name == "RunConfig":
        from pedagogy.config import RunConfig

        return RunConfig
    raise AttributeError(f"module 'pedagogy' has no attribute {name!r}")
