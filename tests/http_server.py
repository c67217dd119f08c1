"""A real HTTP server on loopback that serves files with Range support and misbehaves on demand: it drops
connections, answers with errors or an HTML page, ignores ranges, lies about the piece it sends or the
version it is, says a .tar.gz is gzip-encoded, keeps a download in flight, or trickles it."""
import contextlib
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Set
from urllib.parse import urlsplit


class FileServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        #: path -> byte count: the next full response for it is cut after that many bytes.
        self.cut_after: Dict[str, int] = {}
        self.requests: List[Dict[str, str]] = []
        #: (method, path) -> callable(handler), for fake APIs.
        self.api_handlers = {}
        #: path -> HTTP statuses to answer, one per request, before the file is served (a 503 now and then).
        self.failures: Dict[str, List[int]] = {}
        #: path -> bytes sent with 200 instead of the file (a login page).
        self.instead: Dict[str, bytes] = {}
        #: Paths whose range requests get a 206 with the file from byte 0 (a broken proxy or CDN).
        self.range_from_zero: Set[str] = set()
        #: Paths whose range requests get a 206 whose Content-Range names the bytes asked for, with a body of
        #: that length that starts at byte 0 all the same (a lying cache).
        self.lying_range: Set[str] = set()
        #: Paths whose range requests get a 206 of the file as it is now, whatever If-Range says.
        self.ignore_if_range: Set[str] = set()
        #: path -> the ETag to send whatever the content (a server whose validator does not follow changes).
        self.fixed_etag: Dict[str, str] = {}
        #: path -> byte count: every full response for it is cut after that many bytes (a link that always drops).
        self.cut_every: Dict[str, int] = {}
        #: path -> seconds between pieces of 1000 bytes: the body is trickled (a server holding a client).
        self.trickle: Dict[str, float] = {}
        #: path -> bytes that replace the file once a response for it was cut (a new version, mid-download).
        self.replace_after_cut: Dict[str, bytes] = {}
        #: Paths sent with ``Content-Encoding: gzip`` (the stored .tar.gz bytes as they are, as a web server
        #: configured with AddEncoding does).
        self.gzip_encoded: Set[str] = set()
        #: path -> event: a GET for it is answered only once the event is set (a download kept in flight).
        self.held: Dict[str, threading.Event] = {}
        #: path -> event set when a GET for it arrives.
        self.arrived: Dict[str, threading.Event] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _api(self, method) -> bool:
                server.requests.append({"method": method, "path": self.path, **dict(self.headers)})
                api = server.api_handlers.get((method, self.path))
                if api is not None:
                    api(self)
                return api is not None

            def do_POST(self):
                if not self._api("POST"):
                    self.send_error(404)

            def do_GET(self):
                if self._api("GET"):
                    return
                path = urlsplit(self.path).path  # a query (?token=...) does not name another file
                server.arrived.setdefault(path, threading.Event()).set()
                if path in server.held:
                    server.held[path].wait(120)
                if server.failures.get(path):
                    self.send_error(server.failures[path].pop(0))
                    return
                if path in server.instead:
                    self._send(200, server.instead[path], {"Content-Type": "text/html"})
                    return
                target = server.root / path.lstrip("/")
                if not target.is_file():
                    self.send_error(404)
                    return
                data = target.read_bytes()
                etag = server.fixed_etag.get(path, f'"{hashlib.sha256(data).hexdigest()[:16]}"')
                start = 0
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                if_range = self.headers.get("If-Range")
                if match and if_range is not None and if_range != etag and path not in server.ignore_if_range:
                    match = None  # the file changed since the client's piece: send it whole
                if match and path in server.range_from_zero:
                    self._send(206, data, {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}", "ETag": etag})
                    return
                if match and path in server.lying_range and int(match.group(1)) < len(data):
                    first = int(match.group(1))
                    self._send(206, data[:len(data) - first],
                               {"Content-Range": f"bytes {first}-{len(data) - 1}/{len(data)}", "ETag": etag})
                    return
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
                if path in server.gzip_encoded:
                    self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                cut = server.cut_after.pop(path, None)
                if cut is None and start == 0:
                    cut = server.cut_every.get(path)
                if path in server.trickle:
                    with contextlib.suppress(OSError):  # the client gave up on it
                        for piece in range(0, len(body), 1000):
                            self.wfile.write(body[piece:piece + 1000])
                            self.wfile.flush()
                            time.sleep(server.trickle[path])
                    return
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    if path in server.replace_after_cut:
                        target.write_bytes(server.replace_after_cut.pop(path))
                    return
                self.wfile.write(body)

            def _send(self, status: int, body: bytes, headers: Dict[str, str]):
                self.send_response(status)
                for name, value in dict(headers, **{"Content-Length": str(len(body))}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reply_json(self, method: str, path: str, payload, token: str = None):
        """Answer ``method path`` with JSON; with ``token``, only for that bearer token."""
        def handle(handler):
            if token is not None and handler.headers.get("Authorization") != "Bearer " + token:
                handler.send_error(401)
                return
            body = json.dumps(payload).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        self.api_handlers[(method, path)] = handle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        for event in self.held.values():  # no request left waiting on a test that ended
            event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
