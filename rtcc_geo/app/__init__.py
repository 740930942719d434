"""The rtcc-geo commander app (Dash): ``create_app(store)``; see docs/app.md."""

from .server import create_app, wsgi

__all__ = ["create_app", "wsgi"]
