"""The HTTP API (FastAPI): ``app.py`` builds it, ``deps.py`` checks bearer tokens, ``render.py``
writes runs, steps and inbox rows as JSON, ``routers/`` holds one module per audience."""

from lifecycle.web.app import create_app

__all__ = ["create_app"]
