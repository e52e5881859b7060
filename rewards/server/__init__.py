"""The scorer as an HTTP reward server: `iadr1-reward-server` (docs/server.md).

`app.create_app` / `app.app_from_env` build the FastAPI app (also what Ray Serve replicas
run); `cli.main` checks the start-up and runs it on uvicorn with the connection limits of
`h11_guard.GuardedH11Protocol`. Nothing here is imported by the core scorer.
"""

from .cli import main

__all__ = ["main"]
