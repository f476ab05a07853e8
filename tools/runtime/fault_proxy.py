"""A local HTTP proxy in front of one base URL, for fault injection in tests and added latency in benchmarks.

    with FaultProxy("http://127.0.0.1:8090/fhir") as proxy:
        proxy.inject(Fault.rate_limited(retry_after=1), method="POST")
        proxy.inject(Fault.drop(), times=2)
        client = FhirClient(proxy.base_url)
        ...
        assert proxy.count(method="POST") == 2

Faults wait in a queue; each request takes the first queued fault whose method/path filter it matches
(one use per fault), otherwise it is forwarded untouched. Absolute URLs of the target in responses
(paging ``next`` links, ``Location``) are rewritten to the proxy, so follow-up requests come back here.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

import httpx

# Hop-by-hop headers (RFC 9110 section 7.6.1) and the ones the proxy recomputes.
_REQUEST_SKIP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
                 "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
_RESPONSE_SKIP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                  "date", "server"}


@dataclass(frozen=True)
class Fault:
    """What to do to one request instead of (or around) forwarding it."""

    kind: Literal["status", "delay", "drop"]
    status: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    # True: the target receives the request first (it takes effect), then the fault hits the answer.
    forward_first: bool = False

    @classmethod
    def rate_limited(cls, retry_after: float = 1) -> Fault:
        """429 with ``Retry-After`` seconds; not forwarded."""
        return cls("status", status=429, retry_after=retry_after)

    @classmethod
    def unavailable(cls, status: int = 503) -> Fault:
        """A 5xx answer without forwarding."""
        return cls("status", status=status)

    @classmethod
    def delay(cls, seconds: float, forward_first: bool = False) -> Fault:
        """Waits before answering (to make a client time out), then forwards normally. With
        ``forward_first`` the target has already done the work when the client gives up."""
        return cls("delay", seconds=seconds, forward_first=forward_first)

    @classmethod
    def drop(cls, forward_first: bool = False) -> Fault:
        """Closes the connection without an answer (optionally after the target processed it)."""
        return cls("drop", forward_first=forward_first)


@dataclass
class _QueuedFault:
    fault: Fault
    method: str | None
    path_prefix: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix))


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str  # path and query as received
    # "forwarded", "status-429", "delay", "drop", "upstream-error"; "drop-after-forward" and
    # "delay-after-forward" when the target received the request first (it took effect)
    outcome: str
    upstream_seconds: float = 0.0  # time the target took to answer (the server's share, without added latency)


class FaultProxy:
    """Threaded HTTP/1.1 proxy on 127.0.0.1 (free port). ``base_url`` has the target's path."""

    def __init__(self, target_base_url: str, *, latency: float = 0.0, jitter: float = 0.0,
                 seed: int | None = None, upstream_timeout: float = 120.0, max_connections: int = 64,
                 fault_rate: float = 0.0, random_faults: tuple[Fault, ...] = ()):
        target = urlsplit(target_base_url.rstrip("/"))
        self.target_origin = f"{target.scheme}://{target.netloc}"
        self._target_path = target.path
        self.latency = latency
        self.jitter = jitter
        self._random = random.Random(seed)
        # Besides the queued faults: each other request meets one of ``random_faults`` with this chance.
        self.fault_rate = fault_rate
        self.random_faults = tuple(random_faults)
        self._lock = threading.Lock()
        self._faults: list[_QueuedFault] = []
        self.requests: list[ProxiedRequest] = []
        self._upstream = httpx.Client(
            timeout=upstream_timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> FaultProxy:
        handler = type("BoundHandler", (_Handler,), {"proxy": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections would otherwise outlive the proxy
            _close_quietly(conn)
        self._thread.join(timeout=5)
        self._upstream.close()
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}{self._target_path}"

    # --- programming faults --------------------------------------------------------------
    def inject(self, fault: Fault, times: int = 1, *, method: str | None = None,
               path_prefix: str | None = None) -> FaultProxy:
        """Queues ``fault`` for the next ``times`` matching requests. ``path_prefix`` is relative to
        the base URL's path (``"/Patient"`` matches ``/fhir/Patient?...``)."""
        prefix = None if path_prefix is None else self._target_path + path_prefix
        with self._lock:
            self._faults.extend(_QueuedFault(fault, method and method.upper(), prefix) for _ in range(times))
        return self

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # --- counting ------------------------------------------------------------------------
    @property
    def total(self) -> int:
        with self._lock:
            return len(self.requests)

    def count(self, method: str | None = None, path_prefix: str | None = None, outcome: str | None = None) -> int:
        """Requests received, filtered by method, path prefix (relative to the base URL) and outcome."""
        prefix = None if path_prefix is None else self._target_path + path_prefix
        with self._lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method.upper())
                       and (prefix is None or r.path.startswith(prefix))
                       and (outcome is None or r.outcome == outcome))

    def counts_by(self) -> Counter:
        """(method, path without query) -> number of requests."""
        with self._lock:
            return Counter((r.method, r.path.split("?", 1)[0]) for r in self.requests)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- used by the handler -------------------------------------------------------------
    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, queued in enumerate(self._faults):
                if queued.matches(method, path):
                    return self._faults.pop(index).fault
            if self.random_faults and self._random.random() < self.fault_rate:
                return self._random.choice(self.random_faults)
        return None

    def _record(self, method: str, path: str, outcome: str, upstream_seconds: float = 0.0) -> None:
        with self._lock:
            self.requests.append(ProxiedRequest(method, path, outcome, upstream_seconds))

    def _added_latency(self) -> float:
        if not self.latency and not self.jitter:
            return 0.0
        with self._lock:
            return max(0.0, self.latency + self._random.uniform(-self.jitter, self.jitter))

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(conn)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that gave up (its timeout, during a delay fault) or a dropped connection is what
        # this proxy is for: no traceback. Anything else is still printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _close_quietly(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy  # set on the bound subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients use it
    timeout = 120  # idle connections end eventually

    def setup(self) -> None:
        super().setup()
        self.proxy._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.proxy._track(self.connection, False)

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: tests read counters, not logs
        pass

    def do_request(self) -> None:
        proxy = self.proxy
        method, path = self.command, self.path
        body = self._read_body()
        fault = proxy._take_fault(method, path)
        latency = proxy._added_latency()
        if latency:
            time.sleep(latency)

        if fault is not None and fault.kind == "status":
            proxy._record(method, path, f"status-{fault.status}")
            headers = {"Retry-After": _seconds_text(fault.retry_after)} if fault.retry_after is not None else {}
            self._answer(fault.status, {"Content-Type": "application/fhir+json", **headers},
                         b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient",'
                         b'"diagnostics":"injected by fault proxy"}]}')
            return
        if fault is not None and not fault.forward_first:
            if fault.kind == "drop":
                proxy._record(method, path, "drop")
                self._drop()
                return
            time.sleep(fault.seconds)

        sent = time.monotonic()
        try:
            upstream = proxy._upstream.request(method, proxy.target_origin + path, content=body,
                                               headers=self._forward_headers())
        except httpx.HTTPError:
            proxy._record(method, path, "upstream-error", time.monotonic() - sent)
            self._answer(502, {"Content-Type": "text/plain"}, b"upstream unreachable")
            return

        if fault is not None and fault.forward_first:
            if fault.kind == "drop":
                proxy._record(method, path, "drop-after-forward")
                self._drop()
                return
            time.sleep(fault.seconds)
        upstream_seconds = time.monotonic() - sent
        outcome = "forwarded" if fault is None else "delay-after-forward" if fault.forward_first else "delay"
        proxy._record(method, path, outcome, upstream_seconds)
        self._answer(upstream.status_code, self._response_headers(upstream), self._rewrite(upstream.content))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_request

    # --- helpers -----------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward_headers(self) -> dict[str, str]:
        return {key: value for key, value in self.headers.items() if key.lower() not in _REQUEST_SKIP}

    def _response_headers(self, upstream: httpx.Response) -> dict[str, str]:
        headers = {}
        for key, value in upstream.headers.multi_items():
            if key.lower() in _RESPONSE_SKIP:
                continue
            headers[key] = value.replace(self.proxy.target_origin, self.proxy.origin)
        return headers

    def _rewrite(self, content: bytes) -> bytes:
        return content.replace(self.proxy.target_origin.encode(), self.proxy.origin.encode())

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self) -> None:
        self.close_connection = True
        _close_quietly(self.connection)


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
