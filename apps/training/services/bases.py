"""Registered base models: weights files an ML engineer uploads (e.g. a pretrained YOLO checkpoint downloaded
elsewhere) to start training from. The web process stores the file with its sha256; a training worker (where torch
lives) loads it with ultralytics' restricted loader before anyone may train from it."""

import hashlib
import logging
import re
import tempfile
from pathlib import Path

from django.db import transaction

from apps.datasets.storage import place_stored_file, sha256_of_file, store_once
from apps.training.models import BaseModel
from vectormlops.errors import Conflict, ValidationFailed

log = logging.getLogger(__name__)

MAX_BASE_MODEL_BYTES = 1024**3  # the largest YOLO checkpoints are a few hundred MB
NAME = re.compile(r"^[\w.\- ]{1,100}$")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive; anything else is not a checkpoint we load


def _digest(upload) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
        size += len(chunk)
    upload.seek(0)
    return digest.hexdigest(), size


@transaction.atomic
def base_model_register(*, name: str, upload, user=None, note: str = "") -> BaseModel:
    """Store an uploaded ``.pt`` content-addressed with its sha256 and queue its safe load on a training worker.
    Refused: a bad name, a name or file already registered, not a .pt, not a torch archive, too big."""
    name = (name or "").strip()
    if not NAME.match(name):
        raise ValidationFailed(
            "A name is 1 to 100 letters, digits, spaces, dots, dashes or underscores.", code="invalid_name"
        )
    if not str(getattr(upload, "name", "")).lower().endswith(".pt"):
        raise ValidationFailed("A base model is a PyTorch .pt file.", code="invalid_weights")
    if upload.size > MAX_BASE_MODEL_BYTES:
        raise ValidationFailed(
            f"A weights file is at most {MAX_BASE_MODEL_BYTES // 1024**2} MB.", code="file_too_large"
        )
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    if head != ZIP_MAGIC:
        raise ValidationFailed("This is not a PyTorch checkpoint (torch.save archive).", code="invalid_weights")
    if BaseModel.objects.filter(name=name).exists():
        raise Conflict(f"A base model is already called {name!r}.", code="base_model_exists", details={"name": name})
    sha256, size = _digest(upload)
    existing = BaseModel.objects.filter(sha256=sha256).first()
    if existing is not None:
        raise Conflict(
            f"This file is already registered as {existing.name!r}.",
            code="base_model_exists",
            details={"id": existing.pk, "name": existing.name},
        )
    path = f"base-models/{sha256[:2]}/{sha256}.pt"
    store_once(path, upload, sha256=sha256, size=size)
    base = BaseModel(
        name=name,
        storage_path=path,
        sha256=sha256,
        size=size,
        note=note[:200],
        uploaded_by=user if getattr(user, "pk", None) else None,
    )
    base.full_clean()
    base.save()

    def queue():
        from apps.training.tasks import base_model_check_task

        base_model_check_task.delay(base.pk)

    transaction.on_commit(queue)
    return base


def load_checkpoint_safely(path: Path) -> dict:
    """Load a checkpoint with ultralytics' restricted loader (torch.load(weights_only=True) against an allow-list of
    torch and ultralytics model classes): a pickle that names anything else raises instead of running. Returns what
    it found (task, class names, parameter count). Raises ValueError for what is no detection checkpoint."""
    from ultralytics.nn.tasks import _SafeLoad, torch_safe_load

    if not _SafeLoad.SUPPORTED:  # older torch: the restricted load would quietly become a full unpickle
        raise ValueError("this torch cannot load checkpoints safely (torch 2.6 or newer is needed)")
    checkpoint, _ = torch_safe_load(str(path), safe_only=True)
    model = checkpoint.get("ema") or checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if model is None or not hasattr(model, "names"):
        raise ValueError("the file holds no ultralytics model")
    task = getattr(model, "task", "")
    if task and task != "detect":
        raise ValueError(f"a {task} model, not a detection model")
    names = model.names
    classes = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    return {"task": task or "detect", "classes": classes, "parameters": sum(p.numel() for p in model.parameters())}


def base_model_check(*, base_model_id: int) -> BaseModel:
    """On a training worker: fetch the stored file, check its sha256, load it safely; ready or rejected (why)."""
    base = BaseModel.objects.get(pk=base_model_id)
    if base.status != BaseModel.Status.CHECKING:
        return base
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "base.pt"
        try:
            place_stored_file(base.storage_path, target, link=False)
            if sha256_of_file(target) != (base.sha256, base.size):
                raise ValueError("the stored file does not match its sha256")
            details = load_checkpoint_safely(target)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the file's verdict, recorded for the user
            log.info("base model %s rejected: %s", base.pk, exc)
            base.status, base.error = BaseModel.Status.REJECTED, str(exc)[:2000]
            base.save(update_fields=["status", "error"])
            return base
    base.status, base.details, base.error = BaseModel.Status.READY, details, ""
    base.save(update_fields=["status", "details", "error"])
    return base


def base_weights_fetch(base: BaseModel, folder: Path) -> str:
    """The registered base's file placed in a run's folder, its sha256 checked and loaded safely again (the same
    bytes then load in ultralytics' normal path, which can only meet allow-listed classes in them)."""
    if base.status != BaseModel.Status.READY:
        raise RuntimeError(f"base model {base.name} is {base.status}")
    target = folder / "base.pt"
    place_stored_file(base.storage_path, target, link=False)
    if sha256_of_file(target) != (base.sha256, base.size):
        raise RuntimeError(f"base model {base.name} fails its checksum ({base.storage_path})")
    load_checkpoint_safely(target)
    return str(target)
