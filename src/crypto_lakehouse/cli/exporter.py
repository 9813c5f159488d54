"""`crypto-lakehouse exporter serve`: the Prefect metrics exporter for Prometheus."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import timedelta

import typer

from crypto_lakehouse.cli._common import console, handle_errors
from crypto_lakehouse.observability.exporter import PrefectExporter

app = typer.Typer(help="Expose Prefect flow-run metrics for Prometheus.")


@app.command()
@handle_errors
def serve(
    api_url: str = typer.Option(
        "http://127.0.0.1:4200/api", envvar="PREFECT_API_URL", help="Prefect API (ends in /api)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to serve /metrics on."),
    port: int = typer.Option(9464, min=1, max=65535, help="Port to serve /metrics on."),
    interval: float = typer.Option(15.0, min=0.2, help="Seconds between polls of the API."),
    lookback_minutes: int = typer.Option(
        60, min=0, help="At start, count runs that ended at most this long ago."
    ),
) -> None:
    """Poll the Prefect API and serve prefect_* series until SIGTERM or Ctrl-C.

    Basic auth, when the server has one, comes from PREFECT_API_AUTH_STRING (user:password).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or None
    console.print(f"exporter: polling {api_url} every {interval:g}s, /metrics on {host}:{port}")
    with PrefectExporter(
        api_url, auth_string=auth, lookback=timedelta(minutes=lookback_minutes)
    ) as exporter:
        exporter.serve(host=host, port=port, interval=interval, stop=stop)
