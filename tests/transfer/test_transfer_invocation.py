"""The s5cmd child's environment: only what it needs, with the collector tuned."""

from __future__ import annotations

from pydantic import SecretStr

from crypto_lakehouse.storage import Endpoint
from crypto_lakehouse.transfer.binary import DEFAULT_GOGC, Invocation

SIGNED = Endpoint(url="http://127.0.0.1:9", access_key=SecretStr("ak"), secret_key=SecretStr("sk"))


def test_child_gets_its_identity_and_the_collector_setting_but_nothing_else() -> None:
    env = Invocation(SIGNED).env(
        {"PATH": "/bin", "DATABASE_URL": "postgres://secret", "HOME": "/h"}
    )
    assert env["GOGC"] == DEFAULT_GOGC
    assert env["AWS_ACCESS_KEY_ID"] == "ak" and env["HOME"] == "/h"
    assert "DATABASE_URL" not in env


def test_the_callers_own_go_settings_win() -> None:
    env = Invocation(SIGNED).env({"PATH": "/bin", "GOGC": "100", "GOMEMLIMIT": "512MiB"})
    assert (env["GOGC"], env["GOMEMLIMIT"]) == ("100", "512MiB")
