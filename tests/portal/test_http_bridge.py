"""The ASGI server's HTTP path: Django's WSGI handler on request threads (portal/http_bridge.py)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from portal.http_bridge import WSGIBridge


def scope(method: str = "POST", path: str = "/echo", query: bytes = b"", headers=()) -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query,
        "http_version": "1.1",
        "scheme": "https",
        "server": ("portal.example", 443),
        "client": ("10.0.0.7", 50123),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


def call(app, request_scope: dict, messages: list[dict]) -> list[dict]:
    """Run the ASGI app on one request; returns what it sent."""
    sent: list[dict] = []
    incoming = list(messages)

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # nothing more will come

    async def send(message):
        sent.append(message)

    asyncio.run(app(request_scope, receive, send))
    return sent


class Echo:
    """A WSGI app answering with what it was given, and noting the thread it ran and closed in."""

    def __init__(self, stream: bool = False):
        self.stream = stream
        self.threads: dict[str, int] = {}
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        self.threads["run"] = threading.get_ident()
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        answer = {
            "body": body.decode(),
            "length": environ["CONTENT_LENGTH"],
            "type": environ.get("CONTENT_TYPE"),
            "signature": environ.get("HTTP_X_SIGNATURE"),
            "accept": environ.get("HTTP_ACCEPT"),
            "query": environ["QUERY_STRING"],
            "scheme": environ["wsgi.url_scheme"],
            "remote": environ["REMOTE_ADDR"],
            "server": (environ["SERVER_NAME"], environ["SERVER_PORT"]),
        }
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Trace", "t-1")])
        return _Result(self, [json.dumps(answer).encode()] if not self.stream else [b"one,", b"", b"two"], self.stream)


class _Result(list):
    def __init__(self, app: Echo, chunks: list[bytes], streaming: bool):
        super().__init__(chunks)
        self.app = app
        self.streaming = streaming

    def close(self):
        self.app.threads["close"] = threading.get_ident()


def test_a_chunked_body_arrives_whole_with_its_length_and_headers_in_the_environ():
    app = Echo()
    bridge = WSGIBridge(app, threads=2)
    request = scope(
        query=b"sku=A%201",
        headers=[("Content-Type", "application/json"), ("X-Signature", "sha256=ab"), ("Accept", "a"), ("Accept", "b")],
    )

    sent = call(
        bridge,
        request,
        [
            {"type": "http.request", "body": b'{"a": ', "more_body": True},
            {"type": "http.request", "body": b"1}", "more_body": False},
        ],
    )

    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 201
    assert (b"x-trace", b"t-1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {
        "body": '{"a": 1}',
        "length": "8",
        "type": "application/json",
        "signature": "sha256=ab",
        "accept": "a,b",
        "query": "sku=A%201",
        "scheme": "https",
        "remote": "10.0.0.7",
        "server": ["portal.example", "443"],
    }
    assert app.threads["run"] == app.threads["close"] != threading.get_ident()


def test_a_declared_length_is_replaced_by_what_arrived():
    app = Echo()
    sent = call(
        WSGIBridge(app, threads=1),
        scope(headers=[("Content-Length", "999")]),
        [{"type": "http.request", "body": b"abc"}],
    )

    assert json.loads(sent[1]["body"])["length"] == "3"


def test_a_streaming_response_is_sent_as_it_is_produced_and_closed_in_its_thread():
    app = Echo(stream=True)

    sent = call(WSGIBridge(app, threads=1), scope(method="GET"), [{"type": "http.request", "body": b""}])

    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 201
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [(b"one,", True), (b"two", True), (b"", False)]
    assert app.threads["run"] == app.threads["close"]


def test_a_client_that_disconnects_before_its_body_is_complete_is_not_handled():
    app = Echo()

    sent = call(
        WSGIBridge(app, threads=1),
        scope(),
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}],
    )

    assert sent == [] and app.calls == 0


@pytest.mark.django_db(transaction=True)
def test_the_portal_answers_through_it():
    from portal.asgi import application

    sent = call(
        application,
        scope(method="GET", path="/api/v1/availability", query=b"sku=X", headers=[("Host", "127.0.0.1")]),
        [{"type": "http.request", "body": b""}],
    )

    assert sent[0]["status"] == 401
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "not_authenticated"
