"""One root exception, a few subclasses. Every message names the bad value and the fix."""

from __future__ import annotations


class PedagogyError(Exception):
    """Root of every error pedagogy raises on purpose."""

    exit_code = 1


class ConfigError(PedagogyError):
    """A config file, flag or name is wrong; the user must change their input."""

    exit_code = 2


class UnknownNameError(ConfigError):
    """A domain, backend, sampler or policy name that no registry knows."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.known)}")


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
