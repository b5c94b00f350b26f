"""Plugins: modules whose import registers custom parts, for every command and every later read.

A plugin is a module that registers parts when imported: a domain (`register_domain`), an
episode graph (`register_graph`), tools, backends, trainers, explanation styles, samplers or
intervention policies. A command imports plugins from three places:

- ``--plugin MODULE`` (repeatable) on `run`, `show`, `replay`, `export`, `audit` and `bench`;
- the entry points of installed packages in the group ``pedagogy.plugins`` (each names a module,
  or a function to call), loaded automatically;
- a config's ``plugins:`` list, imported when the config loads.

A run records in its stored config (``plugins``) every plugin it was made with, and the
importable modules of its other custom parts (`pedagogy.parts`), so that `show`, `replay`,
`export` and `audit` import them again without ``--plugin``. When a plugin cannot be imported, or
a part the run needs is still unknown, the error is one line naming what is missing and how to
supply it. This module only imports: it knows no registry, so a config can use it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
import warnings
from collections.abc import Iterable
from typing import Any

from pedagogy.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "load_entry_points", "load_plugins", "load_recorded"]

ENTRY_POINT_GROUP = "pedagogy.plugins"
OPTION = "--plugin"
"""The `source` of plugins named on the command line."""
_FIX = "put its folder on PYTHONPATH or install the package that provides it"


_loaded: dict[str, str] = {}
"""Plugin modules this process imported, with where each was named: --plugin, an entry point's
package, a config file or a run."""
_skipped: set[str] = set()
"""Recorded plugins that could not be found, skipped because --plugin modules stand in."""
_entry_points_loaded = False


def load_plugins(modules: Iterable[str], source: str = OPTION) -> None:
    """Import each plugin module once (its import registers its parts).

    A recorded plugin (`source` not ``--plugin``) that cannot be found is skipped, with one
    warning, when ``--plugin`` modules were given: they stand in for it, and the parts a
    command needs are checked where it needs them (`require_parts`)."""
    for module in modules:
        if module in _loaded or module in _skipped:
            continue
        what = f"--plugin {module!r}" if source == OPTION else f"{source}: plugin {module!r}"
        if not isinstance(module, str) or not module.strip() or module.startswith("."):
            raise ConfigError(
                f"{what} is not a module name; give an absolute import path such as "
                "'mypackage.plugin'"
            )
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not (module == err.name or module.startswith(f"{err.name}.")):
                raise ConfigError(
                    f"{what} failed to import: it needs {err.name!r}, which is not installed; "
                    "install it"
                ) from err
            if source != OPTION and OPTION in _loaded.values():
                _skipped.add(module)
                warnings.warn(
                    f"{what} is not installed; going on with the --plugin modules given",
                    stacklevel=2,
                )
                continue
            hint = "" if source == OPTION else ", or pass --plugin MODULE that registers its parts"
            raise ConfigError(
                f"{what} cannot be imported (no module named {err.name!r}); {_FIX}{hint}"
            ) from None
        except Exception as err:
            raise ConfigError(
                f"{what} failed to import: {type(err).__name__}: "
                f"{' '.join(str(err).split())[:200]}; fix the module"
            ) from err
        _loaded[module] = source


def load_entry_points() -> None:
    """Load every installed entry point of the group ``pedagogy.plugins`` (once per process):
    its module is imported, and a function it names is called."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if ep.dist is not None else "an unknown package"
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, types.ModuleType):
                obj()
        except Exception as err:
            raise ConfigError(
                f"plugin entry point {ep.name!r} ({ep.value}) of package {package!r} failed "
                f"to load: {type(err).__name__}: {' '.join(str(err).split())[:200]}; fix or "
                "uninstall that package"
            ) from err
        _loaded.setdefault(ep.module, f"entry point of {package}")


def load_recorded(config: dict[str, Any], run_id: str) -> None:
    """Import the plugins a run recorded in its stored config (`config`, as stored)."""
    modules = config.get("plugins") or []
    if not isinstance(modules, list):
        raise ConfigError(f"run {run_id}: its stored plugins are {modules!r}, not a list")
    load_plugins(modules, f"run {run_id}")
