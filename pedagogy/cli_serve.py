"""`pedagogy serve`: the read-only web viewer (`pedagogy.viewer`) on a local port."""

from __future__ import annotations

import typer

from pedagogy.cli_common import DB_HELP, console, fail
from pedagogy.errors import ConfigError, PedagogyError


def serve(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    port: int = typer.Option(8765, "--port", help="TCP port to listen on."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind: 127.0.0.1 (this machine only, the default); 0.0.0.0 shares the "
        "runs with your network, unauthenticated.",
    ),
) -> None:
    """Browse runs, episodes, model versions and audits in a web browser (read-only)."""
    import socket

    from pedagogy.config import load_config

    url = db or load_config(None).db_url()
    if not 0 < port < 65536:
        fail(ConfigError(f"--port must be 1-65535, got {port}"))
    try:
        from pedagogy.viewer.app import create_app

        app = create_app(url)
    except PedagogyError as err:
        fail(err)
    try:  # a taken port as one line, before uvicorn logs its own traceback-free exit
        with socket.socket() as probe:
            probe.bind((host, port))
    except OSError as err:
        fail(ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port"))
    import uvicorn

    console.print(f"pedagogy viewer on http://{host}:{port}/ (Ctrl-C stops it)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
