"""Old module paths kept for one release: a module whose names moved re-exports them lazily, each
read warning (DeprecationWarning) with the name's new home."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def moved_names(
    old: str, new_home: dict[str, list[str]], renamed: dict[str, tuple[str, str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """(`__getattr__`, `__dir__`, `__all__`) for module `old`: `new_home` maps a module to the
    names that moved there unchanged, `renamed` an old name to (module, new name)."""
    where = {name: (module, name) for module, names in new_home.items() for name in names}
    where.update(renamed)
    public = sorted(n for n in where if not n.startswith("_"))

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        module, new = where[name]
        import warnings

        warnings.warn(
            f"{old}.{name} is deprecated; use {module}.{new}", DeprecationWarning, stacklevel=2
        )
        return getattr(import_module(module), new)

    return __getattr__, lambda: public, public
