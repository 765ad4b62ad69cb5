"""Test doubles for the agent's unit tests: a fake of the server's robot API and hand-made ONNX detectors.

The fake keeps to API.md (paths, status codes, ETag/304, Range/206, error envelope). The real server is tested
against the agent in tests/e2e.
"""

import builtins
import email.parser
import email.policy
import errno
import hashlib
import io
import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOKEN = "robot-token-1"


def constant_detector(
    detections: list[tuple[float, float, float, float, float]],
    *,
    imgsz: int = 64,
    n: int = 8,
    conv_layers: int = 0,
    seed: int = 0,
):
    """ONNX bytes of a 'detector' whose output is always ``detections`` (cx, cy, w, h, conf in input pixels).

    Shaped like an ultralytics YOLOv8 export: input ``images`` (1, 3, imgsz, imgsz), output (1, 5, n).
    ``conv_layers`` 3x3 convolutions (16 channels, random weights from ``seed``) run on the image first, so the
    model costs real compute like a small CNN; two models with the same layers and another seed cost the same.
    """
    output = np.zeros((1, 5, n), dtype=np.float32)
    for i, (cx, cy, w, h, conf) in enumerate(detections):
        output[0, :, i] = [cx, cy, w, h, conf]
    rng = np.random.default_rng(seed)
    nodes, weights, features = [], [], "images"
    for layer in range(conv_layers):
        name = f"w{layer}"
        weights.append(
            numpy_helper.from_array(rng.normal(0, 0.1, (16, 3 if layer == 0 else 16, 3, 3)).astype(np.float32), name)
        )
        nodes.append(helper.make_node("Conv", [features, name], [f"c{layer}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{layer}"], [f"r{layer}"]))
        features = f"r{layer}"
    nodes += [
        helper.make_node("ReduceMax", [features], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "answer"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, n])],
        initializer=[
            numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero"),
            numpy_helper.from_array(output, "answer"),
            *weights,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@dataclass
class FakeModel:
    model_id: int
    data: bytes
    version: int = 1
    announced_sha: str | None = None  # serve a wrong checksum when set

    @property
    def sha256(self) -> str:
        return self.announced_sha or hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeServer:
    """The robot endpoints of API.md, with switches for faults."""

    dataset: str = "vector"
    models: dict[int, FakeModel] = field(default_factory=dict)
    deployed: int | None = None
    shadow: int | None = None  # the model announced as the answer's ``shadow`` part
    poll_after_s: int = 60
    enrollment_key: str = "enrol-me"
    tokens: set = field(default_factory=lambda: {TOKEN})
    down: bool = False  # close connections without answering (a restart, a network cut)
    cut_artifact_after: int | None = None  # cut the next artifact body after N bytes (once)
    flip_artifact_byte: bool = False  # corrupt artifact bodies in transit
    model_body: tuple[str, bytes] | None = None  # answer polls with this (content type, body) instead
    model_status: int = 200  # ... and this status (a captive portal's 302, say)
    portal: bool = False  # answer every request with model_body / model_status (a captive portal)
    image_status: Callable[[dict], int | None] | None = None  # answer an upload with this status (by its fields)
    status_for_all: int | None = None  # answer every POST with this status (the whole server failing)
    telemetry: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)

    def start(self) -> "FakeServer":
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_model(self, model_id: int, data: bytes, **kwargs) -> FakeModel:
        self.models[model_id] = FakeModel(model_id, data, **kwargs)
        return self.models[model_id]

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for r in self.requests if r["method"] == method and r["path"].startswith(path_prefix))

    def telemetry_records(self) -> list[dict]:
        return [record for body in self.telemetry for record in body["records"]]


def _artifacts(model: FakeModel) -> dict:
    url = f"/api/v1/models/{model.model_id}/artifacts/onnx"
    return {"onnx": {"url": url, "sha256": model.sha256, "size": len(model.data)}}


def _handler(server: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body=None, headers: dict | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if status != 304:
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str = "") -> None:
            self._reply(status, {"error": {"code": code, "message": message or code, "details": {}}})

        def _enter(self) -> bool:
            url = urlparse(self.path)
            with server.lock:
                server.requests.append({"method": self.command, "path": url.path, "headers": dict(self.headers)})
            if server.down:
                self.close_connection = True
                self.connection.close()
                return False
            if server.portal:
                if self.command == "POST":
                    self._body()
                self._page()
                return False
            if url.path == "/api/v1/robots/enroll":
                return True
            if self.headers.get("Authorization") not in {f"Bearer {t}" for t in server.tokens}:
                self._error(401, "not_authenticated", "bad token")
                return False
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self):
            if not self._enter():
                return
            url = urlparse(self.path)
            if url.path == "/api/v1/robot/model":
                return self._model(parse_qs(url.query))
            parts = url.path.strip("/").split("/")
            if len(parts) == 6 and parts[2] == "models" and parts[4] == "artifacts" and parts[5] == "onnx":
                return self._artifact(int(parts[3]))
            self._error(404, "not_found")

        def _page(self) -> None:
            content_type, data = server.model_body
            self.send_response(server.model_status)
            self.send_header("Content-Type", content_type)
            if server.model_status in (301, 302, 303, 307):
                self.send_header("Location", "http://portal.example/login")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _model(self, query) -> None:
            if server.model_body is not None:
                return self._page()
            model = server.models.get(server.deployed) if server.deployed else None
            if model is None:
                return self._error(404, "no_deployment", "nothing deployed")
            shadow = server.models.get(server.shadow) if server.shadow else None
            etag = f'"{model.model_id}-{model.sha256[:16]}-{shadow.sha256[:16] if shadow else ""}"'
            if self.headers.get("If-None-Match") == etag:
                return self._reply(304, headers={"ETag": etag})
            body = {
                "dataset": server.dataset,
                "model_id": model.model_id,
                "version": model.version,
                "channel": "production",
                "sha256": model.sha256,
                "classes": ["vector"],
                "imgsz": 64,
                "conf_threshold": 0.5,
                "artifacts": _artifacts(model),
                "deployed_at": "2026-11-27T10:00:00Z",
                "poll_after_s": server.poll_after_s,
            }
            if shadow is not None:
                body["shadow"] = {
                    "model_id": shadow.model_id,
                    "version": shadow.version,
                    "sha256": shadow.sha256,
                    "classes": ["vector"],
                    "imgsz": 64,
                    "conf_threshold": 0.5,
                    "artifacts": _artifacts(shadow),
                }
            self._reply(200, body, {"ETag": etag})

        def _artifact(self, model_id: int) -> None:
            model = server.models[model_id]
            data = model.data
            if server.flip_artifact_byte:
                data = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
            start = 0
            status = 200
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data):
                    return self._error(416, "range_not_satisfiable")
                status = 206
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{model.sha256}"')
            self.send_header("X-Checksum-Sha256", model.sha256)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            cut = server.cut_artifact_after
            if cut is not None:
                server.cut_artifact_after = None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_POST(self):
            if not self._enter():
                return
            path = urlparse(self.path).path
            body = self._body()
            if server.status_for_all is not None:
                return self._error(server.status_for_all, "failing", "the whole server fails")
            if path == "/api/v1/robots/enroll":
                payload = json.loads(body)
                if payload.get("enrollment_key") != server.enrollment_key:
                    return self._error(403, "forbidden")
                token = f"token-for-{payload['serial']}"
                server.tokens.add(token)
                return self._reply(201, {"serial": payload["serial"], "token": token})
            if path == "/api/v1/telemetry":
                payload = json.loads(body)
                if len(payload["records"]) > 500:
                    return self._error(413, "too_many_records")
                with server.lock:
                    server.telemetry.append({**payload, "headers": dict(self.headers)})
                return self._reply(202, {"accepted": len(payload["records"])})
            if path == "/api/v1/images":
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                fields, file = {}, None
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name == "file":
                        file = part.get_payload(decode=True)
                    else:
                        fields[name] = part.get_payload(decode=True).decode()
                fields["meta"] = json.loads(fields.get("meta") or "{}")
                status = server.image_status(fields) if server.image_status else None
                if status is not None:
                    return self._error(status, "failing", "this upload always fails")
                sha = hashlib.sha256(file).hexdigest()
                with server.lock:
                    duplicate = any(i["sha256"] == sha for i in server.images)
                    server.images.append({**fields, "sha256": sha, "bytes": file, "headers": dict(self.headers)})
                    image_id = len(server.images)
                return self._reply(
                    200 if duplicate else 201, {"id": image_id, "sha256": sha, "split": "train", "duplicate": duplicate}
                )
            self._error(404, "not_found")

    return Handler


class SmallDisk:
    """A folder with little room: a real tmpfs of ``size`` bytes where mounting is permitted (root, as in CI), else
    a write quota on the folder (``open`` wrapped: writes past ``size`` under it fail with ENOSPC). ``real`` says which.
    """

    def __init__(self, root: Path, size: int, *, mount: bool = True):
        self.root, self.size = root, size
        root.mkdir(parents=True, exist_ok=True)
        self.real, self.why_not = False, "quota asked for"
        if mount:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True
            )
            self.real, self.why_not = done.returncode == 0, done.stderr.decode().strip()
        self._patches: list[tuple[object, str, object]] = []
        if not self.real:
            for module in (builtins, io):
                self._patches.append((module, "open", module.open))
                module.open = self._open

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.root)], check=True)
        for module, name, original in self._patches:
            setattr(module, name, original)

    def free(self) -> int:
        if self.real:
            stat = os.statvfs(self.root)
            return stat.f_bavail * stat.f_frsize
        return self.size - sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def fill(self, leave: int) -> Path:
        """Fill the disk but ``leave`` bytes; delete the returned file to free the room again."""
        filler = self.root / "filler"
        with _REAL_OPEN(filler, "wb") as handle:
            handle.write(b"\0" * max(0, self.free() - leave))
        return filler

    def _open(self, file, mode="r", *args, **kwargs):
        handle = _REAL_OPEN(file, mode, *args, **kwargs)
        inside = isinstance(file, str | os.PathLike) and Path(file).resolve().is_relative_to(self.root.resolve())
        return _Quota(handle, self) if inside and any(c in mode for c in "wax+") else handle


_REAL_OPEN = builtins.open


class _Quota:
    """A file whose writes stop, with ENOSPC, where the disk's quota ends (what fits is written, as a disk would)."""

    def __init__(self, handle, disk: SmallDisk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        self._handle.flush()
        room = self._disk.free()
        if len(data) > room:
            self._handle.write(data[: max(0, room)])
            self._handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


def write_model(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


__all__ = ["FakeServer", "TOKEN", "constant_detector", "onnx"]
