"""``lifecycle serve``: the API, the executor, the checkpoint signer and the scheduler."""

from __future__ import annotations

from typing import Annotated

import typer

from lifecycle.cli.common import ConfigOpt, fail, settings_from
from lifecycle.exceptions import LifecycleError
from lifecycle.logs import LogFormat
from lifecycle.logs import configure as configure_logging


def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(envvar="LIFECYCLE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LIFECYCLE_PORT")] = 8080,
    log_level: Annotated[str, typer.Option(envvar="LIFECYCLE_LOG_LEVEL")] = "info",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="LIFECYCLE_LOG_FORMAT",
            help="text, or json: one JSON object per line (run, worker, system, action, "
            "attempt and error class as fields).",
        ),
    ] = LogFormat.TEXT,
) -> None:
    """Run the API, the executor and the checkpoint signer."""
    import uvicorn

    from lifecycle.service import Service
    from lifecycle.web import create_app

    configure_logging(log_level, log_format)
    settings = settings_from(config)
    try:
        service = Service.build(settings)
    except LifecycleError as exc:
        fail(exc.message)
    # log_config=None: uvicorn's own lines go through the handler above, in the same format.
    uvicorn.run(
        create_app(service), host=host, port=port, log_level=log_level.lower(), log_config=None
    )
