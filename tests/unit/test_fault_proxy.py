"""The fault proxy against a tiny in-process upstream (no stack needed)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tools.runtime.fault_proxy import Fault, FaultProxy


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: list[tuple[str, str, bytes]] = []

    def log_message(self, *args) -> None:
        pass

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append((self.command, self.path, body))
        origin = f"http://{self.headers['Host']}"
        payload = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                              "next": f"{origin}/fhir/Patient?_offset=20"}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Location", f"{origin}/fhir/Patient/1/_history/1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _reply


@pytest.fixture
def upstream():
    _Upstream.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


def test_forwards_and_rewrites_target_urls(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        assert proxy.base_url.endswith("/fhir") and proxy.base_url != upstream
        response = client.post(f"{proxy.base_url}/Patient?x=1", json={"resourceType": "Patient"})
        assert response.status_code == 201
        body = response.json()
        assert body["path"] == "/fhir/Patient?x=1"
        assert json.loads(body["body"]) == {"resourceType": "Patient"}
        # links back to the target now point at the proxy, so paging stays behind it
        assert body["next"].startswith(proxy.origin)
        assert response.headers["Location"].startswith(proxy.origin)
        assert _Upstream.received[0][0] == "POST"


def test_scripted_faults_apply_in_order_once_each(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.inject(Fault.rate_limited(retry_after=3)).inject(Fault.unavailable())
        first = client.get(f"{proxy.base_url}/Patient")
        second = client.get(f"{proxy.base_url}/Patient")
        third = client.get(f"{proxy.base_url}/Patient")
        assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
        assert second.status_code == 503
        assert third.status_code == 200
        assert proxy.pending_faults == 0
        assert len(_Upstream.received) == 1  # the faulted requests never reached the target
        assert proxy.count(outcome="forwarded") == 1 and proxy.total == 3


def test_fault_filters_by_method_and_path(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.inject(Fault.unavailable(), method="PUT", path_prefix="/Patient")
        assert client.get(f"{proxy.base_url}/Patient").status_code == 200
        assert client.put(f"{proxy.base_url}/Observation/1", content=b"{}").status_code == 200
        assert client.put(f"{proxy.base_url}/Patient/1", content=b"{}").status_code == 503
        assert proxy.count(method="PUT") == 2
        assert proxy.count(path_prefix="/Patient") == 2
        assert proxy.counts_by()[("PUT", "/fhir/Patient/1")] == 1


def test_drop_closes_without_answer(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.inject(Fault.drop())
        with pytest.raises(httpx.TransportError):
            client.get(f"{proxy.base_url}/Patient")
        assert not _Upstream.received
        assert client.get(f"{proxy.base_url}/Patient").status_code == 200


def test_drop_after_forwarding_reaches_target(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.inject(Fault.drop(forward_first=True))
        with pytest.raises(httpx.TransportError):
            client.post(f"{proxy.base_url}/Patient", content=b"{}")
        assert [r[0] for r in _Upstream.received] == ["POST"]


def test_delay_makes_client_time_out(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client(timeout=0.3) as client:
        proxy.inject(Fault.delay(1.0))
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{proxy.base_url}/Patient")
        assert client.get(f"{proxy.base_url}/Patient").status_code == 200


def test_added_latency_with_jitter(upstream):
    with FaultProxy(upstream, latency=0.1, jitter=0.02, seed=1) as proxy, httpx.Client() as client:
        began = time.monotonic()
        for _ in range(3):
            client.get(f"{proxy.base_url}/metadata")
        assert time.monotonic() - began >= 3 * 0.08


def test_stop_closes_idle_connections(upstream):
    proxy = FaultProxy(upstream).start()
    url = f"{proxy.base_url}/Patient"
    with httpx.Client() as client:
        assert client.get(url).status_code == 200
        proxy.stop()
        with pytest.raises(httpx.TransportError):
            client.get(url)
