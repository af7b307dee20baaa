"""Misbehaving PACS stand-ins on loopback: one that hangs up at once, one that never answers, and
a proxy in front of a real Orthanc that fails the Nth WADO-RS retrieval. Each counts connections."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class _TcpFake:
    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            if self.hold:
                self._held.append(conn)  # read nothing, answer nothing: the client's read times out
            else:
                conn.close()  # the server "is down": connection made, then dropped

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self._held:
            c.close()
        self._sock.close()


def dropping_server() -> _TcpFake:
    return _TcpFake(hold=False)


def hanging_server() -> _TcpFake:
    return _TcpFake(hold=True)


class FailingProxy:
    """Forwards to `upstream`; the `fail_from`-th WADO-RS series/instance retrieval and every later one
    answers 503 (a PACS that breaks down half-way through a study)."""

    def __init__(self, upstream: str, auth: tuple[str, str], fail_from: int) -> None:
        proxy = self
        self.upstream = upstream.rstrip("/")
        self.auth = auth
        self.fail_from = fail_from
        self.wado_requests = 0
        self.failed_requests = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                is_wado = "/series/" in self.path and "?" not in self.path
                if is_wado:
                    with proxy._lock:
                        proxy.wado_requests += 1
                        fail = proxy.wado_requests >= proxy.fail_from
                        proxy.failed_requests += fail
                    if fail:
                        body = b"PACS broke down"
                        self.send_response(503)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
                with httpx.Client(auth=proxy.auth, timeout=60) as c:
                    r = c.get(proxy.upstream + self.path.removeprefix("/dicom-web"), headers=headers)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() in ("content-type",):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
