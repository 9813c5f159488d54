"""The CLI's error edge: a service that fails mid-command (e.g. the Prefect API answering
500 while its database restarts) is one line and exit 4, not a traceback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import typer
from typer.testing import CliRunner

from crypto_lakehouse.cli._common import ExitCode, handle_errors


class _Failing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/concurrency_limits/decrement"
    server.shutdown()
    server.server_close()


def _app(url: str) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def call() -> None:
        httpx.post(url).raise_for_status()

    return app


def test_a_failing_service_is_one_line_and_exit_4(failing_url: str) -> None:
    result = CliRunner().invoke(_app(failing_url), [])
    assert result.exit_code == int(ExitCode.STORAGE), result.output
    assert "service error: 500 Internal Server Error from POST 127.0.0.1:" in result.output
    assert "/api/v2/concurrency_limits/decrement" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_service_is_one_line_and_exit_4() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Failing) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    result = CliRunner().invoke(_app(f"http://127.0.0.1:{port}/"), [])
    assert result.exit_code == int(ExitCode.STORAGE), result.output
    assert "service unreachable: ConnectError" in result.output


def test_other_exceptions_keep_their_traceback() -> None:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def call() -> None:
        raise RuntimeError("a bug")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
