"""The real OHIF viewer (@ohif/app's built dist, fetched by `make ohif`) served on a free loopback
port, with `/dicom-web/` reverse-proxied to a test Orthanc's DICOMweb root.

Same origin for the viewer and the DICOMweb server, so no CORS; the proxy adds Orthanc's basic-auth
header (the browser never sees the password) and passes the browser's Host header on, so that the
BulkDataURIs the DICOMweb plugin writes into the metadata point back at the proxy. `/app-config.js`
is not the shipped one but a config written for that one data source.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.pacs.orthanc import Orthanc

REPO = Path(__file__).resolve().parents[2]
OHIF_VERSION = "3.13.2"  # keep in step with OHIF_VERSION in the Makefile
OHIF_DIST = Path(os.environ.get("CXR_TEST_OHIF_DIST", REPO / "var" / "ohif" / OHIF_VERSION / "dist"))
CHROMIUM = os.environ.get("CXR_TEST_CHROMIUM", "/usr/bin/chromium")

# OHIF reads its configuration from window.config (the shipped dist/app-config.js has the format).
APP_CONFIG = """window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: %(customizations)s,
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'test Orthanc (proxied)',
        name: 'orthanc',
        qidoRoot: %(root)s,
        wadoRoot: %(root)s,
        wadoUriRoot: %(root)s,
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""

# Works around OHIF 3.13.2 aborting the whole SR on a measurement group that has no SCOORD (TID 1501,
# image-level: `_checkIfCanAddMeasurementsToDisplaySet` reads `measurement.coords[0].ReferencedSOPSequence`
# with `coords` empty and throws). The hook is OHIF's own (customization `onBeforeSRAddMeasurement`,
# called per measurement just before that line): an empty coordinate stands in, which OHIF then skips
# ("no ReferencedSOPSequence"), so the groups that do have a region are drawn. For a site's app-config.js.
SKIP_GROUPS_WITHOUT_REGION = """{
    onBeforeSRAddMeasurement: {
      $set: ({ measurement }) => {
        if (!measurement.coords.length) measurement.coords.push({});
        return measurement;
      },
    },
  }"""

# Headless chromium as root in a container, WebGL on SwiftShader (what cornerstone renders with).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]

# What the proxy passes on, either way (hop-by-hop headers and the browser's cookies stay out).
REQUEST_HEADERS = ("accept", "accept-encoding", "range", "content-type")
RESPONSE_HEADERS = ("content-type", "content-encoding", "content-range", "etag", "last-modified")
EXTRA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
               ".css": "text/css", ".json": "application/json", ".svg": "image/svg+xml", ".woff2": "font/woff2"}


def require_viewer() -> Path:
    """The OHIF dist and Debian's chromium, or a failure that says how to get them (never a skip)."""
    missing = []
    if not (OHIF_DIST / "index.html").is_file():
        missing.append(f"the OHIF viewer @ohif/app@{OHIF_VERSION} (no {OHIF_DIST}/index.html)")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Debian's chromium ({CHROMIUM})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (the [test] extra: make install)")
    if missing:
        pytest.fail("missing " + " and ".join(missing) + ": run `make ohif`", pytrace=False)
    return OHIF_DIST


@dataclass
class ViewerServer:
    dist: Path
    orthanc: Orthanc
    port: int = 0
    customizations: str = "{}"  # JavaScript: OHIF's customizationService entry
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status) of the proxy
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _upstream: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app_config(self) -> bytes:
        return (APP_CONFIG % {"root": json.dumps(self.url + "/dicom-web"),
                              "customizations": self.customizations}).encode()

    def start(self) -> "ViewerServer":
        viewer = self
        auth = "Basic " + base64.b64encode(":".join(self.orthanc.auth).encode()).decode()
        upstream = httpx.Client(base_url=self.orthanc.url, timeout=httpx.Timeout(30, connect=5))
        index = (self.dist / "index.html").read_bytes()
        dist = self.dist.resolve()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _proxy(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in REQUEST_HEADERS}
                headers["Authorization"] = auth
                headers["Host"] = self.headers.get("Host", f"127.0.0.1:{viewer.port}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                try:
                    r = upstream.request(self.command, self.path, headers=headers, content=body)
                except httpx.HTTPError as exc:
                    viewer.requests.append((self.command, self.path, 502))
                    self._send(502, f"proxy: {exc}".encode(), {"Content-Type": "text/plain"})
                    return
                viewer.requests.append((self.command, self.path, r.status_code))
                out = {k: v for k, v in r.headers.items() if k.lower() in RESPONSE_HEADERS}
                out.pop("content-encoding", None)  # httpx has decoded the body
                self._send(r.status_code, r.content, out)

            def _static(self) -> None:
                path = urlsplit(self.path).path
                if path == "/app-config.js":
                    self._send(200, viewer.app_config(), {"Content-Type": "text/javascript"})
                    return
                target = (dist / path.lstrip("/")).resolve()
                if target.is_relative_to(dist) and target.is_file():
                    ctype = EXTRA_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0]
                    self._send(200, target.read_bytes(), {"Content-Type": ctype or "application/octet-stream"})
                elif "." in path.rsplit("/", 1)[-1]:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})
                else:  # a route of the single-page app (/viewer, /): its index.html
                    self._send(200, index, {"Content-Type": "text/html; charset=utf-8"})

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/dicom-web/"):
                    self._proxy()
                else:
                    self._static()

            do_HEAD = do_GET  # noqa: N815

            def do_POST(self) -> None:  # noqa: N802
                if self.path.startswith("/dicom-web/"):
                    self._proxy()
                else:
                    self._send(405, b"", {})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._upstream = upstream
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._upstream.close()
            self._server = None

