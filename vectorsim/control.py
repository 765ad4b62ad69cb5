"""A tiny local HTTP control API for a virtual Vector running as its own process.

``GET /state`` (summary, spoken texts), ``GET /frames/<image_id>`` (true boxes of a generated frame),
``GET /screens/last.png`` or ``/screens/<index>.png``, ``POST /scene`` ``{"brightness": 0.4, "robots": 1}``,
``POST /drop`` ``{"down_for": 2.0}``. Listens on 127.0.0.1 only.
"""

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vectorsim.server import VirtualVector


def make_control_server(vector: VirtualVector, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) controlling ``vector``; call ``serve_forever`` in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - quiet: tests read stdout
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data) -> None:
            self._send(status, json.dumps(data).encode())

        def do_GET(self):
            parts = self.path.strip("/").split("/")
            if parts == ["state"]:
                return self._json(200, vector.state())
            if len(parts) == 2 and parts[0] == "frames" and parts[1].isdigit():
                frame = vector.frames.get(int(parts[1]))
                return self._json(200, frame) if frame else self._json(404, {"error": "unknown frame"})
            if len(parts) == 2 and parts[0] == "screens" and parts[1].endswith(".png"):
                key = parts[1][: -len(".png")]
                screens = list(vector.screens)
                try:
                    screen = screens[-1] if key == "last" else screens[int(key)]
                except (IndexError, ValueError):
                    return self._json(404, {"error": "no such screen"})
                buffer = io.BytesIO()
                screen.image.save(buffer, format="PNG")
                return self._send(200, buffer.getvalue(), "image/png")
            return self._json(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self._json(400, {"error": "body must be JSON"})
            if self.path == "/scene":
                kwargs = {"brightness": body.get("brightness")}
                if "robots" in body:
                    kwargs["robots"] = body["robots"]
                vector.set_scene(**kwargs)
                return self._json(200, vector.state())
            if self.path == "/drop":
                vector.drop_connections(down_for=float(body.get("down_for", 1.0)))
                return self._json(200, {"dropped": True})
            return self._json(404, {"error": "not found"})

    return ThreadingHTTPServer((host, port), Handler)


def serve_control_in_thread(vector: VirtualVector, port: int = 0) -> ThreadingHTTPServer:
    server = make_control_server(vector, port)
    threading.Thread(target=server.serve_forever, daemon=True, name="vectorsim-control").start()
    return server
