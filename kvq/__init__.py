"""KVQ: no-reference quality assessment of short-form videos. `from kvq import load_scorer`
(imported on first use, so `import kvq.<module>` stays light)."""
from __future__ import annotations

from typing import Any

__all__ = ["load_scorer"]


def __getattr__(name: str) -> Any:
    if name == "load_scorer":
        from kvq.scorer import load_scorer

        return load_scorer
    raise AttributeError(f"module 'kvq' has no attribute {name!r}")
