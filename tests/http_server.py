"""A real HTTP server on loopback that serves files with Range support and can drop connections."""
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List


class FileServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        #: path -> byte count: the next full response for it is cut after that many bytes.
        self.cut_after: Dict[str, int] = {}
        self.requests: List[Dict[str, str]] = []
        #: (method, path) -> callable(handler), for fake APIs.
        self.api_handlers = {}
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
                target = server.root / self.path.lstrip("/")
                if not target.is_file():
                    self.send_error(404)
                    return
                data = target.read_bytes()
                etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
                start = 0
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                if_range = self.headers.get("If-Range")
                if match and if_range is not None and if_range != etag:
                    match = None  # the file changed since the client's piece: send it whole
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
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
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
        self.httpd.shutdown()
        self.httpd.server_close()
