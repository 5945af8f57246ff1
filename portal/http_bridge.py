"""Plain HTTP through Django's WSGI handler, inside the ASGI server that also carries the live sockets.

Every portal view and API endpoint is synchronous. Django's ASGI handler runs such a view
through several hand-offs between the event loop and its one sync thread per request
(request signals, connection clean-up, sync-only middleware, the view, closing the response);
measured under uvicorn that cost about 6 ms of CPU per request, several times what a small
API call costs in itself, and it ran one request at a time per process. So HTTP requests go
to the WSGI handler on a pool of threads instead: the body is read on the event loop (as
Django's ASGI handler does), the request is handled in one hand-off, the response comes back
in one piece (streaming responses chunk by chunk). WebSockets still go through Channels.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings


@dataclass
class _Reply:
    """What the WSGI application answered: status, headers and (unless streamed) the whole body."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    streamed: bool = False


class WSGIBridge:
    """An ASGI application for HTTP that runs a WSGI application (Django's) on `threads` threads."""

    def __init__(self, application, *, threads: int):
        self.application = application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope, receive, send) -> None:
        body = await _read_body(receive)
        if body is None:  # the client went away before it finished sending
            return
        loop = asyncio.get_running_loop()
        environ = _environ(scope, body)
        context = contextvars.copy_context()
        reply = await loop.run_in_executor(self.executor, context.run, self._handle, environ, loop, send)
        if not reply.streamed:
            await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
            await send({"type": "http.response.body", "body": reply.body})

    def _handle(self, environ: dict, loop: asyncio.AbstractEventLoop, send) -> _Reply:
        """In a request thread: run the application; a streaming response is sent from here as it is produced."""
        reply = _Reply()

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            reply.status = int(status.split(" ", 1)[0])
            reply.headers = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers]
            return lambda chunk: None  # the legacy write() callable; Django does not use it

        result = self.application(environ, start_response)
        try:
            if not getattr(result, "streaming", False):
                reply.body = b"".join(result)
                return reply
            reply.streamed = True
            deliver = _sender(loop, send)
            deliver({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
            for chunk in result:
                if chunk:
                    deliver({"type": "http.response.body", "body": chunk, "more_body": True})
            deliver({"type": "http.response.body", "body": b""})
            return reply
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # Django's request_finished: this thread's database connection goes back


def _sender(loop: asyncio.AbstractEventLoop, send):
    def deliver(message: dict) -> None:
        asyncio.run_coroutine_threadsafe(send(message), loop).result()

    return deliver


async def _read_body(receive):
    """The whole request body, spooled to disk past the upload memory limit; None if the client disconnected."""
    body = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")  # noqa: SIM115
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            body.close()
            return None
        body.write(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body.seek(0)
    return body


def _environ(scope: dict, body) -> dict:
    """A WSGI environ for an ASGI HTTP scope (PEP 3333); CONTENT_LENGTH is the body actually received."""
    server_name, server_port = scope.get("server") or ("localhost", 80)
    size = body.seek(0, 2)
    body.seek(0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf8").decode("latin1"),
        "PATH_INFO": scope["path"].encode("utf8").decode("latin1"),
        "QUERY_STRING": scope["query_string"].decode("latin1"),
        "SERVER_NAME": str(server_name),
        "SERVER_PORT": str(server_port or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = scope["client"][0], str(scope["client"][1])
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin1").upper().replace("-", "_")
        if name == "CONTENT_LENGTH":
            continue  # set from what arrived: a chunked body has no header, a lying header is ignored
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        value = raw_value.decode("latin1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ["CONTENT_LENGTH"] = str(size)
    return environ
