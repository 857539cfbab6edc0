"""Name -> class registries (one per kind of thing), with helpful errors for typos."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Iterable, Optional


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

    >>> BACKBONES = Registry("backbone")
    >>> @BACKBONES.register("simpleVQA")
    ... class SimpleVQABackbone: ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, Any] = {}

    def register(self, name: Optional[str] = None) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            key = name or obj.__name__
            if key in self._items:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; "
                f"known: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
