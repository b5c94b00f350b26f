"""The custom parts a config names (`pedagogy.graphs.parts`, where they live so that replay can
use them without importing the front door); kept importable from here."""

from __future__ import annotations

from pedagogy.graphs.parts import _registries, recorded_plugins, require_parts, used_parts

__all__ = ["_registries", "recorded_plugins", "require_parts", "used_parts"]
