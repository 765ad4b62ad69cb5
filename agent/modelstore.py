"""The models on disk: the one running, the one before it, and downloads in progress.

Files are named by their sha256 (``models/<sha256>.onnx``); which one is current is a small ``state.json``
replaced atomically, so a crash mid-swap leaves either the old or the new model running, never a mix. The previous
model is kept (a rollback needs no download). A model that fails to load is remembered by sha256 and not retried.
"""

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.api import sha256_file

logger = logging.getLogger("agent.models")


@dataclass
class ModelInfo:
    """A model the agent has installed."""

    model_id: int
    sha256: str
    size: int
    dataset: str = ""
    version: int | None = None
    classes: list[str] = field(default_factory=list)
    imgsz: int = 640
    conf_threshold: float = 0.25


class ModelStore:
    """Download targets, verified installs and the atomic swap of the running model."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_path = self.root / "state.json"
        state = self._read_state()
        try:
            self.current: ModelInfo | None = ModelInfo(**state["current"]) if state.get("current") else None
            self.previous: ModelInfo | None = ModelInfo(**state["previous"]) if state.get("previous") else None
            self.rejected: dict[str, str] = dict(state.get("rejected") or {})
        except (TypeError, ValueError, AttributeError) as exc:  # damaged: start empty, the next poll installs again
            logger.error("model state %s is damaged (%s); starting without an installed model", self._state_path, exc)
            self.current = self.previous = None
            self.rejected = {}

    def _read_state(self) -> dict:
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as exc:
            logger.error("model state %s is not JSON (%s); starting without an installed model", self._state_path, exc)
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self) -> None:
        state = {
            "current": asdict(self.current) if self.current else None,
            "previous": asdict(self.previous) if self.previous else None,
            "rejected": self.rejected,
        }
        tmp = self._state_path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(state, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._state_path)

    def path_of(self, sha256: str) -> Path:
        return self.root / f"{sha256}.onnx"

    def part_path(self, sha256: str) -> Path:
        """Where the download of ``sha256`` goes (kept across cuts and restarts so it can resume)."""
        return self.root / f"{sha256}.onnx.part"

    def has_verified(self, sha256: str) -> bool:
        path = self.path_of(sha256)
        return path.exists() and sha256_file(path) == sha256

    def forget(self, info: ModelInfo) -> None:
        """Drop an installed model whose file is damaged: out of the state, file deleted (a later poll downloads it)."""
        if self.current is not None and self.current.sha256 == info.sha256:
            self.current = None
        if self.previous is not None and self.previous.sha256 == info.sha256:
            self.previous = None
        self.path_of(info.sha256).unlink(missing_ok=True)
        self._write_state()

    def reject(self, info: ModelInfo, reason: str) -> None:
        """Never run ``info`` again (it failed while running): out of the state, file deleted, sha256 remembered."""
        self.rejected[info.sha256] = reason[:500]
        self.forget(info)

    def install(self, info: ModelInfo, loader: Callable[[Path, ModelInfo], Any], downloaded: Path | None = None) -> Any:
        """Make ``info`` the running model and return what ``loader`` built from it.

        ``downloaded`` is a verified file to move in (None when the file is already in the store, e.g. the previous
        model on a rollback). If ``loader`` raises, the model is rejected (file deleted, sha256 remembered), the
        running model stays and the exception propagates.
        """
        path = self.path_of(info.sha256)
        if downloaded is not None:
            os.replace(downloaded, path)
        try:
            loaded = loader(path, info)
        except Exception as exc:
            self.rejected[info.sha256] = str(exc)[:500]
            if self.current is None or self.current.sha256 != info.sha256:
                if self.previous is None or self.previous.sha256 != info.sha256:
                    path.unlink(missing_ok=True)
            self._write_state()
            raise
        if self.current is None or self.current.sha256 != info.sha256:
            self.previous, self.current = self.current, info
        else:
            self.current = info
        self.rejected.pop(info.sha256, None)
        self._write_state()
        self._collect_garbage()
        return loaded

    def _collect_garbage(self) -> None:
        keep = {m.sha256 for m in (self.current, self.previous) if m}
        for path in self.root.glob("*.onnx"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)
        for path in self.root.glob("*.onnx.part"):
            if path.name.split(".")[0] in keep:
                path.unlink(missing_ok=True)
