"""The simulator's HTTP side: the partner endpoints the portal delivers to, and the control endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

KINDS = ("erp", "wms", "tms", "wcs")
MAX_BODY = 1024 * 1024


STARTING_RETRY_AFTER = 2  # seconds: the driver is up within a few


@dataclass
class Faults:
    """What one partner endpoint does wrong: a share of errors, slowness, an outage, a permanent refusal."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    down_until: float = 0.0  # time.time() until which every call fails with error_status
    refuse_status: int | None = None  # e.g. 422: every call is refused (a permanent failure)
    retry_after: int | None = None  # sent with 429/503 answers

    def update(self, values: dict) -> None:
        for key in ("error_rate", "latency_ms"):
            if key in values:
                setattr(self, key, float(values[key]))
        for key in ("error_status",):
            if key in values:
                setattr(self, key, int(values[key]))
        if "refuse_status" in values:
            self.refuse_status = int(values["refuse_status"]) if values["refuse_status"] else None
        if "retry_after" in values:
            self.retry_after = int(values["retry_after"]) if values["retry_after"] is not None else None
        if "outage_seconds" in values:
            self.down_until = time.time() + float(values["outage_seconds"])

    def as_dict(self) -> dict:
        return {
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "latency_ms": self.latency_ms,
            "down_for_seconds": max(0.0, round(self.down_until - time.time(), 1)),
            "refuse_status": self.refuse_status,
            "retry_after": self.retry_after,
        }


@dataclass
class PartnerBook:
    """What one simulated partner has seen: applied messages by idempotency key, duplicates, order per key."""

    applied: dict[str, dict] = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    failed: int = 0
    refused: int = 0
    bad_signatures: int = 0
    out_of_order: int = 0
    last_id_per_key: dict[str, int] = field(default_factory=dict)
    sequence: list[dict] = field(default_factory=list)

    def counts(self) -> dict:
        return {
            "received": self.received,
            "applied": len(self.applied),
            "duplicates": self.duplicates,
            "failed": self.failed,
            "refused": self.refused,
            "bad_signatures": self.bad_signatures,
            "out_of_order": self.out_of_order,
        }


class SimulatorState:
    """Everything the simulator knows, behind one lock (handlers run in threads)."""

    def __init__(self, *, secrets: dict[str, str], seed: int | None = None):
        self.lock = threading.Lock()
        self.secrets = secrets
        self.rng = random.Random(seed)
        self.faults = {kind: Faults() for kind in KINDS}
        self.books = {kind: PartnerBook() for kind in KINDS}
        self.stock: dict[str, dict[str, int]] = defaultdict(dict)  # the ERP's book: warehouse -> sku -> on hand
        self.listeners: list = []  # callables(kind, message_type, body) run after a message is applied
        self.controls: dict = {}  # extra control actions: name -> callable(data) -> dict (e.g. the WCS floor)
        self.reports: dict = {}  # extra sections of /_control/stats: name -> callable() -> dict
        # While the driver starts, nobody would act on a message (acknowledge a work instruction,
        # pick a released order): such a message is answered 503, and the portal sends it again.
        self.starting = False

    def reset(self, *, faults: bool = True) -> None:
        """Forget what was received (and, unless told otherwise, the faults set so far)."""
        with self.lock:
            if faults:
                self.faults = {kind: Faults() for kind in KINDS}
            self.books = {kind: PartnerBook() for kind in KINDS}
            self.stock = defaultdict(dict)

    def signature_ok(self, kind: str, headers, body: bytes) -> bool:
        secret = self.secrets.get(kind, "")
        if not secret:
            return True
        timestamp = headers.get("X-Timestamp", "")
        expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers.get("X-Signature", ""))

    def receive(self, kind: str, path: str, headers, body: bytes) -> tuple[int, dict, dict]:
        """Apply one outbound message at most once; returns (status, body, extra headers)."""
        faults = self.faults[kind]
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000 * (0.5 + self.rng.random()))
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            book = self.books[kind]
            book.received += 1
            if not self.signature_ok(kind, headers, body):
                book.bad_signatures += 1
                return 401, {"error": "bad signature"}, {}
            if self.starting:
                book.failed += 1
                return 503, {"error": "the simulator is starting"}, {"Retry-After": str(STARTING_RETRY_AFTER)}
            if faults.refuse_status:
                book.refused += 1
                return faults.refuse_status, {"error": "refused by the partner"}, {}
            if time.time() < faults.down_until or (faults.error_rate and self.rng.random() < faults.error_rate):
                book.failed += 1
                extra = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
                return faults.error_status, {"error": "partner unavailable"}, extra
            if not key:
                book.refused += 1
                return 400, {"error": "Idempotency-Key header required"}, {}
            if key in book.applied:
                book.duplicates += 1
                return 200, {"status": "duplicate", "first": book.applied[key]["at"]}, {}
            try:
                message = json.loads(body or b"{}")
            except json.JSONDecodeError:
                book.refused += 1
                return 400, {"error": "body is not JSON"}, {}
            ordering_key = headers.get("X-Ordering-Key", "")
            message_id = int(headers.get("X-Message-Id") or 0)
            if message_id < book.last_id_per_key.get(ordering_key, 0):
                book.out_of_order += 1
            book.last_id_per_key[ordering_key] = max(message_id, book.last_id_per_key.get(ordering_key, 0))
            record = {
                "key": key,
                "at": time.time(),
                "message_id": message_id,
                "ordering_key": ordering_key,
                "type": headers.get("X-Message-Type", ""),
                "path": path,
            }
            book.applied[key] = record
            book.sequence.append(record)
            if kind == "erp" and record["type"] == "inventory.adjusted":
                data = message.get("data", {})
                warehouse, sku = str(data.get("warehouse")), str(data.get("sku"))
                if sku in self.stock[warehouse]:
                    self.stock[warehouse][sku] += int(data.get("quantity_delta") or 0)
            listeners = list(self.listeners)
        for listener in listeners:
            try:
                listener(kind, record["type"], message)
            except Exception:  # a driver problem must not turn into a delivery failure
                pass
        return 200, {"status": "applied"}, {}

    def stats(self) -> dict:
        with self.lock:
            stats = {kind: {**self.books[kind].counts(), "faults": self.faults[kind].as_dict()} for kind in KINDS}
            reports = dict(self.reports)
        for name, report in reports.items():
            stats[f"{name}_floor"] = report()
        return stats


def make_handler(state: SimulatorState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "PartnerSimulator/1"

        def log_message(self, format, *args):  # quiet: counters tell the story
            return

        def setup(self):
            super().setup()
            # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms a call.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body, extra: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(min(length, MAX_BODY)) if length else b""

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/healthz":
                return self._send(200, {"ok": True})
            if url.path == "/_control/stats":
                return self._send(200, state.stats())
            if url.path == "/_control/applied":
                kind = (query.get("kind") or ["erp"])[0]
                with state.lock:
                    sequence = list(state.books[kind].sequence) if kind in state.books else []
                return self._send(200, sequence)
            if url.path == "/erp/stock":
                warehouse = (query.get("warehouse") or [""])[0]
                with state.lock:
                    rows = [{"sku": sku, "on_hand": n} for sku, n in sorted(state.stock.get(warehouse, {}).items())]
                return self._send(200, rows)
            return self._send(404, {"error": "not found"})

        def do_POST(self):
            url = urlparse(self.path)
            body = self._body()
            if url.path.startswith("/_control/"):
                return self._control(url.path.removeprefix("/_control/"), body)
            kind = url.path.strip("/").split("/", 1)[0]
            if kind not in KINDS:
                return self._send(404, {"error": "not found"})
            status, payload, extra = state.receive(kind, url.path, self.headers, body)
            return self._send(status, payload, extra)

        def _control(self, action: str, body: bytes):
            try:
                data = json.loads(body or b"{}")
            except json.JSONDecodeError:
                return self._send(400, {"error": "body is not JSON"})
            if action == "reset":
                state.reset(faults=bool(data.get("faults", True)))
            elif action == "config":
                with state.lock:
                    for kind, values in data.items():
                        if kind in state.faults:
                            state.faults[kind].update(values)
            elif action == "stock":
                with state.lock:
                    for warehouse, rows in data.items():
                        state.stock[warehouse] = {str(sku): int(n) for sku, n in rows.items()}
            elif action in state.controls:
                return self._send(200, state.controls[action](data))
            else:
                return self._send(404, {"error": "unknown control action"})
            return self._send(200, state.stats())

    return Handler


def serve(state: SimulatorState, *, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    return server
