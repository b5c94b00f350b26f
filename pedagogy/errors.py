"""One root exception, a few subclasses. Every message names the bad value and the fix."""

from __future__ import annotations


class PedagogyError(Exception):
    """Root of every error pedagogy raises on purpose."""

    exit_code = 1


class ConfigError(PedagogyError):
    """A config file, flag or name is wrong; the user must change their input."""

    exit_code = 2


class UnknownNameError(ConfigError):
    """A domain, backend, sampler or policy name that no registry knows. `register_with`: the
    function that registers another (named in the message, with where to call it)."""

    def __init__(self, kind: str, name: str, known: list[str], register_with: str | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        how = (
            f", or register one with {register_with}(...) in a plugin module (--plugin MODULE "
            "or the config's plugins:)"
            if register_with
            else ""
        )
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.known)}{how}")


class StoreError(PedagogyError):
    """The database cannot be reached or holds something unexpected."""

    exit_code = 2


class BackendError(PedagogyError):
    """A model backend failed (unreachable endpoint, corrupt model directory, ...)."""

    exit_code = 2


class ModelLoadError(BackendError):
    """A model directory or hub id could not be loaded."""


class TrainingError(PedagogyError):
    """A fine-tuning job failed."""


class BudgetExhausted(PedagogyError):
    """A run reached one of its `budget` limits; it stops cleanly and continues with `--resume`
    and a higher limit."""

    exit_code = 3

    def __init__(self, message: str, budget: str, spent: float, limit: float):
        self.budget, self.spent, self.limit = budget, spent, limit
        super().__init__(message)


class RunInUse(PedagogyError):
    """Another live process holds the run's lease (`pedagogy.memory.lease`): it is running."""

    exit_code = 2
