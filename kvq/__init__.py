"""KVQ: no-reference quality assessment of short-form videos. `from kvq import load_scorer`
(and `SlowFastOptions`; imported on first use, so `import kvq.<module>` stays light)."""
from __future__ import annotations

from typing import Any

__all__ = ["load_scorer", "SlowFastOptions"]


def __getattr__(name: str) -> Any:
    if name == "load_scorer":
        from kvq.api.scorer import load_scorer

        return load_scorer
    if name == "SlowFastOptions":
        from kvq.features.scored_files import SlowFastOptions

        return SlowFastOptions
    raise AttributeError(f"module 'kvq' has no attribute {name!r}")
