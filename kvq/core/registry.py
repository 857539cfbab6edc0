"""Name -> class registries (one per kind of thing), with helpful errors for typos."""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Dict, Iterable, Optional, Sequence


def nearest(name: str, choices: Iterable[str]) -> Optional[str]:
    """The closest of `choices` to `name`, or None when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' or '' — for error messages."""
    best = nearest(name, choices)
    return f" (did you mean '{best}'?)" if best else ""


class Registry:
    """Maps config names to classes/functions.

    `modules`: the modules whose import registers the items, imported on the first lookup (`get`,
    `names`, `in`), not before: so importing one of them does not import the others, and whoever
    looks a name up sees every item. The registries themselves live with what they hold
    (models/registry.py, datasets/registry.py).

    >>> BACKBONES = Registry("backbone")
    >>> @BACKBONES.register("simpleVQA")
    ... class SimpleVQABackbone: ...
    """

    def __init__(self, kind: str, modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._items: Dict[str, Any] = {}
        self._pending = tuple(modules)

    def _import_modules(self) -> None:
        """Import the registering modules not imported yet (one that fails stays pending)."""
        while self._pending:
            importlib.import_module(self._pending[0])
            self._pending = self._pending[1:]

    def register(self, name: Optional[str] = None) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            key = name or obj.__name__
            if key in self._items:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        self._import_modules()
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; "
                f"known: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self._import_modules()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._import_modules()
        return name in self._items

