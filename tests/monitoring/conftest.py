"""Monitoring's fixtures: a webhook receiver on loopback that checks the HMAC-SHA256 signature."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.monitoring.services.notifications import SIGNATURE_HEADER
from tests.conftest import free_port


class _Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint: checks the signature; answers with the status the test sets."""

    secret = b""
    answers: list[int] = []
    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER, ""))
        status = self.answers.pop(0) if self.answers else 204
        self.received.append({"body": json.loads(body), "valid": valid, "status": status})
        self.send_response(status if valid else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_receiver():
    """(url, receiver): ``receiver.answers`` are the statuses to answer in turn (then 204); ``receiver.received``
    what arrived, with whether its signature (key ``s3cret-key``) was valid."""
    port = free_port()
    _Receiver.secret, _Receiver.answers, _Receiver.received = b"s3cret-key", [], []
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/hook", _Receiver
    server.shutdown()
    server.server_close()
