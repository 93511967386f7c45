"""The web side: the analyst's app and the decision API (FastAPI) around the embedded pipeline."""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    # Lazy: importing fraudstream.web must not require FastAPI (an optional dependency).
    if name == "create_app":
        from fraudstream.web.app import create_app

        return create_app
    raise AttributeError(name)
