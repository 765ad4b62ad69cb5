"""The server's robot API (see API.md), as seen from the robot: enrol, poll the model, download, upload, telemetry.

Errors are sorted by what the agent should do about them: ``ServerUnavailable`` (network down, timeout, 429: retry
later), its kinds ``ServerError`` (the server answered 5xx) and ``BadAnswer`` (a 2xx that is not what API.md says: a
captive portal's HTML page, JSON without ``artifacts.onnx``, wrong types), ``TokenRevoked`` (401: stop),
``RequestRejected`` (any other 4xx), ``CorruptDownload`` (size or sha256 mismatch: never install).
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent import __version__

logger = logging.getLogger("agent.api")

MAX_TELEMETRY_RECORDS = 500


class ApiError(Exception):
    """Base of the errors below."""


class ServerUnavailable(ApiError):
    """The server could not be reached or failed (5xx, 429): try again later."""


class ServerError(ServerUnavailable):
    """The server answered 5xx: it may be down, or it may fail on this one request."""


class BadAnswer(ServerUnavailable):
    """A success status with a body that is not what API.md says (not JSON, fields missing or of the wrong type)."""


class TokenRevoked(ApiError):
    """The server refused the robot's token (401)."""


class RequestRejected(ApiError):
    """The server rejected this request for good (4xx other than 401)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class NoDeployment(ApiError):
    """No model is deployed for this dataset (404 ``no_deployment``)."""


class CorruptDownload(ApiError):
    """A downloaded artifact does not match its announced size or sha256."""


@dataclass
class ModelAnswer:
    """The answer of ``GET /api/v1/robot/model``."""

    model_id: int
    sha256: str
    url: str
    size: int
    dataset: str = ""
    version: int | None = None
    channel: str = ""
    classes: list[str] = field(default_factory=list)
    imgsz: int = 640
    conf_threshold: float = 0.25
    poll_after_s: float = 60.0
    etag: str | None = None
    shadow: "ModelAnswer | None" = None  # the model to run beside this one, never acted on
    shadow_problem: str = ""  # why the answer's ``shadow`` part was unusable (the live part still counts)

    @classmethod
    def from_json(cls, body: Any, etag: str | None) -> "ModelAnswer":
        """Parse the poll answer; anything missing or of the wrong type is a ``BadAnswer`` naming the field.

        A malformed ``shadow`` part never refuses the live model: it is left out and ``shadow_problem`` says why.
        """
        answer = cls._parse(body, etag)
        shadow = body.get("shadow")
        if shadow is not None:
            try:
                if not isinstance(shadow, dict):
                    raise BadAnswer("shadow is not an object")
                context = {"dataset": answer.dataset, "poll_after_s": answer.poll_after_s}
                answer.shadow = cls._parse({**shadow, **context, "channel": "shadow"}, None)
            except BadAnswer as exc:
                answer.shadow_problem = str(exc).replace("model answer", "shadow part")
        return answer

    @classmethod
    def _parse(cls, body: Any, etag: str | None) -> "ModelAnswer":
        try:
            onnx = body["artifacts"]["onnx"]
            answer = cls(
                model_id=_whole(body["model_id"]),
                sha256=onnx.get("sha256") or body["sha256"],
                url=onnx["url"],
                size=_whole(onnx["size"]),
                dataset=body.get("dataset") or "",
                version=body.get("version"),
                channel=body.get("channel") or "",
                classes=body.get("classes") or [],
                imgsz=_whole(body.get("imgsz") or 640),
                conf_threshold=float(body.get("conf_threshold") or 0.25),
                poll_after_s=float(body.get("poll_after_s") or 60),
                etag=etag,
            )
        except KeyError as exc:
            raise BadAnswer(f"model answer without {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadAnswer(f"model answer of the wrong shape: {exc}") from None
        problems = [
            name
            for name, ok in (
                ("sha256", isinstance(answer.sha256, str) and len(answer.sha256) == 64),
                ("url", isinstance(answer.url, str) and answer.url.startswith(("/", "http://", "https://"))),
                ("size", answer.size > 0),
                ("classes", isinstance(answer.classes, list) and all(isinstance(c, str) for c in answer.classes)),
                ("imgsz", answer.imgsz > 0),
                ("conf_threshold", 0 <= answer.conf_threshold <= 1),
                ("poll_after_s", 1 <= answer.poll_after_s <= 86400),
                ("dataset", isinstance(answer.dataset, str)),
            )
            if not ok
        ]
        if problems:
            raise BadAnswer(f"model answer with invalid {', '.join(problems)}")
        return answer


def _whole(value: Any) -> int:
    """An integer, refusing what ``int`` would quietly turn into one (``True``, ``2.7``, ``"12"``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type", "no content type")
        raise BadAnswer(f"{response.status_code} answer is not JSON ({kind}): {response.text[:80]!r}") from None


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return error.get("code", "error"), error.get("message", "")
    except (ValueError, KeyError, TypeError):
        return "http_" + str(response.status_code), response.text[:200]


class ApiClient:
    """One robot's session with the server. Every request reports the model the robot actually runs."""

    def __init__(self, server: str, token: str | None = None, *, timeout: float = 30.0, transport=None):
        self.server = server.rstrip("/")
        self.running_model: tuple[int, str] | None = None
        headers = {"User-Agent": f"vector-agent/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _headers(self, extra: dict | None = None) -> dict:
        headers = dict(extra or {})
        if self.running_model:
            headers["X-Model-Id"] = str(self.running_model[0])
            headers["X-Model-Sha256"] = self.running_model[1]
        return headers

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 401:
            raise TokenRevoked(_error_of(response)[1] or "token refused")
        if response.status_code >= 500:
            raise ServerError(f"server answered {response.status_code}")
        if response.status_code == 429:
            raise ServerUnavailable("server answered 429 (too many requests)")
        if 300 <= response.status_code < 400 and response.status_code != 304:  # e.g. a captive portal's login page
            where = response.headers.get("Location", "nowhere")
            raise BadAnswer(f"server answered {response.status_code}, a redirect to {where[:100]}")
        if response.status_code >= 400:
            code, message = _error_of(response)
            if response.status_code == 404 and code == "no_deployment":
                raise NoDeployment(message)
            raise RequestRejected(response.status_code, code, message)
        return response

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # connect errors, timeouts, cut connections
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return self._check(response)

    # --- endpoints ----------------------------------------------------------------------------------------------
    def enroll(self, *, enrollment_key: str, serial: str, name: str = "") -> dict:
        """``POST /api/v1/robots/enroll`` → ``{"serial", "token"}``."""
        body = {"enrollment_key": enrollment_key, "serial": serial, "name": name}
        return _json(self._request("POST", "/api/v1/robots/enroll", json=body))

    def get_model(self, dataset: str | None, etag: str | None = None) -> ModelAnswer | None:
        """The model to run now, or None when unchanged since ``etag`` (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        params = {"dataset": dataset} if dataset else {}
        response = self._request("GET", "/api/v1/robot/model", params=params, headers=headers)
        if response.status_code == 304:
            return None
        return ModelAnswer.from_json(_json(response), response.headers.get("ETag"))

    def download(self, url: str, dest: Path, *, size: int, sha256: str, attempts: int = 4) -> Path:
        """Download ``url`` into ``dest``, resuming what ``dest`` already holds with ``Range`` after a cut.

        Verifies the size and the sha256; a mismatch deletes ``dest`` and raises ``CorruptDownload``. A cut
        connection is retried ``attempts`` times (resuming); after that ``ServerUnavailable`` is raised and the
        partial file is kept for the next try.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            have = dest.stat().st_size if dest.exists() else 0
            if have > size:
                dest.unlink()
                have = 0
            if have == size:
                break
            headers = self._headers({"Range": f"bytes={have}-"} if have else None)
            try:
                with self._http.stream("GET", url, headers=headers) as response:
                    if response.status_code == 416:  # our partial file is no prefix of theirs
                        dest.unlink(missing_ok=True)
                        continue
                    if response.status_code >= 400:
                        response.read()  # the error envelope, for _check
                    self._check(response)
                    if response.status_code not in (200, 206):  # never let an odd answer overwrite the partial file
                        raise BadAnswer(f"artifact answered {response.status_code}")
                    resumed = response.status_code == 206
                    with open(dest, "ab" if resumed else "wb") as handle:
                        for chunk in response.iter_bytes():  # as received: a cut keeps what arrived
                            handle.write(chunk)
                            if handle.tell() > size:
                                break
                if resumed:
                    logger.info("download resumed at byte %d", have)
            except httpx.TransportError as exc:
                got = dest.stat().st_size if dest.exists() else 0
                logger.warning("download cut at %d/%d bytes (%s); resuming", got, size, exc)
                if attempt == attempts - 1:
                    raise ServerUnavailable(f"download cut: {exc}") from exc
                time.sleep(min(2.0, 0.2 * 2**attempt))
                continue
            if dest.exists() and dest.stat().st_size >= size:
                break
        got = dest.stat().st_size if dest.exists() else 0
        if got != size:
            dest.unlink(missing_ok=True)
            raise CorruptDownload(f"size {got} != announced {size}")
        digest = sha256_file(dest)
        if digest != sha256:
            dest.unlink(missing_ok=True)
            raise CorruptDownload(f"sha256 {digest} != announced {sha256}")
        return dest

    def upload_image(
        self,
        data: bytes,
        *,
        dataset: str,
        source: str = "camera",
        captured_at: str | None = None,
        meta: dict[str, Any] | None = None,
        filename: str = "frame.jpg",
    ) -> dict:
        """``POST /api/v1/images`` (multipart) → ``{"id", "sha256", "split", "duplicate"}``."""
        content_type = "image/png" if filename.lower().endswith(".png") else "image/jpeg"
        fields = {"dataset": dataset, "source": source, "meta": json.dumps(meta or {})}
        if captured_at:
            fields["captured_at"] = captured_at
        files = {"file": (filename, data, content_type)}
        return _json(self._request("POST", "/api/v1/images", data=fields, files=files))

    def post_telemetry(self, *, dataset: str, model_id: int | None, records: list[dict], **extra) -> dict:
        """``POST /api/v1/telemetry`` (at most 500 records) → ``{"accepted": n}``."""
        if len(records) > MAX_TELEMETRY_RECORDS:
            raise ValueError(f"at most {MAX_TELEMETRY_RECORDS} records per request")
        body = {"dataset": dataset, "model_id": model_id, "records": records, **extra}
        return _json(self._request("POST", "/api/v1/telemetry", json=body))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
