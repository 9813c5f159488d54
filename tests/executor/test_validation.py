"""Every kind of bad input is answered 422 with the field and the reason, before queueing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

GOOD: dict[str, Any] = {
    "operation_type": "sync",
    "source": {"bucket": "source-data", "prefix": "data/spot/"},
    "destination": {"bucket": "bronze", "prefix": "binance/"},
    "operation_mode": "auto",
    "configuration": {"max_concurrent": 8, "part_size_mb": 16},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """GOOD with `path` (dot-separated) set to `value`; `...` deletes it."""
    body = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


BAD_BODIES = [
    # (changed field, value, field named in the reply, words in the reason)
    ("source.bucket", "ab", "source.bucket", "at least 3"),
    ("source.bucket", "Upper_Case", "source.bucket", "invalid bucket name"),
    ("source.bucket", "192.168.10.1", "source.bucket", "invalid bucket name"),
    ("source.bucket", "two..dots", "source.bucket", "invalid bucket name"),
    ("source.bucket", "-leading-dash", "source.bucket", "invalid bucket name"),
    ("source.bucket", "x" * 64, "source.bucket", "at most 63"),
    ("source.bucket", 42, "source.bucket", "valid string"),
    ("destination.bucket", "bad bucket", "destination.bucket", "invalid bucket name"),
    ("source.prefix", "data/../etc/", "source.prefix", "'..'"),
    ("destination.prefix", "a/\x00/b", "destination.prefix", "control characters"),
    ("destination.prefix", "line\nbreak/", "destination.prefix", "control characters"),
    ("source.prefix", "/absolute/", "source.prefix", "must not start with '/'"),
    ("source.prefix", "p" * 1025, "source.prefix", "at most 1024"),
    ("operation_type", "move", "operation_type", "'sync' or 'copy'"),
    ("operation_mode", "fast", "operation_mode", "direct_sync"),
    ("configuration.max_concurrent", 0, "configuration.max_concurrent", "greater than or equal"),
    ("configuration.max_concurrent", 5000, "configuration.max_concurrent", "less than or equal"),
    ("configuration.max_concurrent", "many", "configuration.max_concurrent", "valid integer"),
    ("configuration.part_size_mb", 4, "configuration.part_size_mb", "greater than or equal"),
    ("configuration.part_size_mb", 10_000, "configuration.part_size_mb", "less than or equal"),
    ("source", ..., "source", "required"),
    ("destination.bucket", ..., "destination.bucket", "required"),
    ("surprise", 1, "surprise", "not permitted"),
    ("source.region", "eu-west-1", "source.region", "not permitted"),
    ("configuration.numworkers", 256, "configuration.numworkers", "not permitted"),
    # The allow-list (SSRF): only the lake, SOURCE_ENDPOINT and AWS.
    ("source.endpoint", "http://169.254.169.254", "source.endpoint", "allow-list"),
    ("source.endpoint", "http://127.0.0.1:1", "source.endpoint", "allow-list"),
    ("source.endpoint", "https://evil.example.com", "source.endpoint", "allow-list"),
    ("source.endpoint", "ftp://127.0.0.1", "source.endpoint", "should match pattern"),
    ("source.endpoint", "", "source.endpoint", "at least 8"),
    ("source.endpoint", "http://127.0.0.1/some/path", "source.endpoint", "origin only"),
    ("source.endpoint", "http://127.0.0.1?x=1", "source.endpoint", "origin only"),
    ("source.endpoint", "http://127.0.0.1:99999", "source.endpoint", "valid URL"),
]


@pytest.mark.parametrize(("path", "value", "field", "reason"), BAD_BODIES)
def test_bad_body_is_422_with_field_and_reason(
    http: httpx.Client, path: str, value: Any, field: str, reason: str
) -> None:
    reply = http.post("/sync", json=with_change(path, value))
    assert reply.status_code == 422, reply.text
    problems = reply.json()["detail"]
    assert field in [p["field"] for p in problems], problems
    reasons = " ".join(p["reason"] for p in problems if p["field"] == field)
    assert reason in reasons, problems


def test_nothing_was_queued_by_bad_bodies(http: httpx.Client) -> None:
    before = http.get("/operations").json()["total"]
    for path, value, *_ in BAD_BODIES:
        assert http.post("/sync", json=with_change(path, value)).status_code == 422
    assert http.get("/operations").json()["total"] == before


def test_good_body_is_accepted(http: httpx.Client) -> None:
    reply = http.post("/sync", json=GOOD)
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "pending"


def test_credentials_in_an_endpoint_are_refused_and_not_echoed(http: httpx.Client) -> None:
    body = with_change("source.endpoint", "http://admin:hunter2-secret@127.0.0.1:9000")
    reply = http.post("/sync", json=body)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"] == "source.endpoint"
    assert "user info" in reply.json()["detail"][0]["reason"]
    assert "hunter2-secret" not in reply.text


def test_the_lake_is_read_signed_other_sources_anonymously(
    http: httpx.Client, source_server
) -> None:
    signed_elsewhere = with_change("source.endpoint", source_server.url)
    signed_elsewhere["source"]["anonymous"] = False
    reply = http.post("/sync", json=signed_elsewhere)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"] == "source.anonymous"

    allowed = with_change("source.endpoint", source_server.url + "/")
    op = http.post("/sync", json=allowed).json()["operation_id"]
    view = http.get(f"/operations/{op}").json()
    assert view["source"]["anonymous"] is True
    assert view["source"]["endpoint"] == source_server.url + "/"

    lake = http.post("/sync", json=GOOD).json()["operation_id"]
    assert http.get(f"/operations/{lake}").json()["source"] == {
        "bucket": "source-data",
        "prefix": "data/spot/",
        "endpoint": None,
        "anonymous": False,
    }


def test_aws_is_allowed_by_default(http: httpx.Client) -> None:
    body = with_change("source.endpoint", "https://s3.ap-northeast-1.amazonaws.com")
    body["source"]["bucket"] = "data.binance.vision"
    assert http.post("/sync", json=body).status_code == 202
    plain_http = with_change("source.endpoint", "http://s3.amazonaws.com")
    assert http.post("/sync", json=plain_http).status_code == 422


def test_the_service_caps_concurrency_at_its_own_setting(http: httpx.Client) -> None:
    body = with_change("configuration.max_concurrent", 1000)
    op = http.post("/sync", json=body).json()["operation_id"]
    config = http.get(f"/operations/{op}").json()["configuration"]
    assert config == {"max_concurrent": 16, "part_size_mb": 16}  # S5CMD_MAX_CONCURRENT=16


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
def test_malformed_json_is_422(http: httpx.Client, content: bytes, content_type: str) -> None:
    reply = http.post("/sync", content=content, headers={"Content-Type": content_type})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"]


def test_oversized_body_is_413(http: httpx.Client) -> None:
    body = with_change("source.prefix", "a" * (13 * 1024 * 1024))  # /sync's cap is 12 MiB
    assert http.post("/sync", json=body).status_code == 413
    too_big = {"x": "a" * 100_000}  # 64 KiB elsewhere
    assert http.post("/operations/" + "0" * 32 + "/cancel", json=too_big).status_code == 413


LISTED: dict[str, Any] = {**GOOD, "operation_type": "copy"}


def listed(objects: Any, **changes: Any) -> dict[str, Any]:
    return {**LISTED, "objects": objects, **changes}


BAD_LISTS = [
    # (body, field named in the reply, words in the reason)
    (listed([]), "objects", "at least 1"),
    (listed([{"key": f"k{i}", "size": 1} for i in range(10_001)]), "objects", "at most 10000"),
    (listed([{"key": "a", "size": 1}, {"key": "a", "size": 2}]), "objects", "listed twice"),
    (listed([{"key": "a", "size": 1}], operation_type="sync"), "objects", "operation_type 'copy'"),
    (listed([{"key": "a", "size": 1}], operation_mode="direct_sync"), "objects", "direct_sync"),
    (listed([{"key": "../etc/passwd", "size": 1}]), "objects.0.key", "'..'"),
    (listed([{"key": "/abs", "size": 1}]), "objects.0.key", "must not start with '/'"),
    (listed([{"key": "dir/", "size": 1}]), "objects.0.key", "must not end with '/'"),
    (listed([{"key": "", "size": 1}]), "objects.0.key", "at least 1"),
    (listed([{"key": "a\nb", "size": 1}]), "objects.0.key", "control characters"),
    (listed([{"key": "a", "size": -1}]), "objects.0.size", "greater than or equal"),
    (listed([{"key": "a"}]), "objects.0.size", "required"),
    (listed([{"key": "a", "size": 1, "sha256": "ABC"}]), "objects.0.sha256", "should match"),
    (listed([{"key": "a", "size": 1, "md5": "x"}]), "objects.0.md5", "not permitted"),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD_LISTS)
def test_bad_object_list_is_422(http: httpx.Client, body: Any, field: str, reason: str) -> None:
    reply = http.post("/sync", json=body)
    assert reply.status_code == 422, reply.text
    problems = reply.json()["detail"]
    assert any(p["field"] == field and reason in p["reason"] for p in problems), problems


def test_a_full_object_list_is_accepted(http: httpx.Client) -> None:
    objects = [{"key": f"f/{i:05d}.zip", "size": i, "sha256": "a" * 64} for i in range(10_000)]
    reply = http.post("/sync", json=listed(objects))
    assert reply.status_code == 202, reply.text
    op = reply.json()["operation_id"]
    assert http.get(f"/operations/{op}").json()["listed_objects"] == 10_000
    page = http.get(f"/operations/{op}/objects", params={"limit": 3}).json()
    assert [o["key"] for o in page["items"]] == ["f/00000.zip", "f/00001.zip", "f/00002.zip"]
    assert page["items"][1]["source_key"] == "data/spot/f/00001.zip"
    assert page["items"][1]["dest_key"] == "binance/f/00001.zip"
    assert {o["outcome"] for o in page["items"]} == {"pending"}
    rest = http.get(f"/operations/{op}/objects", params={"after": "f/09998.zip"}).json()
    assert [o["key"] for o in rest["items"]] == ["f/09999.zip"] and rest["next_after"] is None


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/operations/not-an-id", "path.operation_id"),
        ("/operations?limit=0", "query.limit"),
        ("/operations?limit=501", "query.limit"),
        ("/operations?offset=-1", "query.offset"),
        ("/operations?status=sleeping", "query.status"),
        ("/operations/" + "0" * 32 + "?wait=61", "query.wait"),
        ("/operations/" + "0" * 32 + "?wait=-1", "query.wait"),
        ("/operations/" + "0" * 32 + "?wait=soon", "query.wait"),
        ("/operations/" + "0" * 32 + "?wait=nan", "query.wait"),
        ("/operations/" + "0" * 32 + "/objects?limit=0", "query.limit"),
        ("/operations/" + "0" * 32 + "/objects?limit=5001", "query.limit"),
        ("/operations/not-an-id/objects", "path.operation_id"),
        ("/operations/" + "0" * 32 + "/objects?after=a%00b", "query.after"),
    ],
)
def test_bad_path_and_query_are_422(http: httpx.Client, url: str, field: str) -> None:
    reply = http.get(url)
    assert reply.status_code == 422
    assert [p["field"] for p in reply.json()["detail"]] == [field]
