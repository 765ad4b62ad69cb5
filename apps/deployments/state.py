"""The cached deployment state robots are answered from (Redis through Django's cache).

Every promote, rollback, canary end, pin and revoke invalidates it on commit, so a poll that finds nothing new is
answered from the cache alone: no database query."""

import hashlib
import json

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

STATE_TTL_S = 3600  # a safety net only: every change deletes the key
STATE_KEY = "deploy-state:{slug}"
MODEL_KEY = "deploy-model:{id}"
DATASETS_KEY = "deploy-datasets"
ARTIFACT_KEY = "deploy-artifact:{id}:{fmt}"
SEEN_KEY = "robot-seen:{digest}"


def state_key(slug: str) -> str:
    return STATE_KEY.format(slug=slug)


def model_key(model_id: int) -> str:
    return MODEL_KEY.format(id=model_id)


def invalidate_state(slug: str) -> None:
    """Drop the cached state now and again after commit (a reader between the two would cache the old state)."""
    cache.delete(state_key(slug))
    transaction.on_commit(lambda: cache.delete(state_key(slug)))


def invalidate_model(model_id: int) -> None:
    cache.delete_many([model_key(model_id), ARTIFACT_KEY.format(id=model_id, fmt="onnx")])
    cache.delete(ARTIFACT_KEY.format(id=model_id, fmt="pt"))


def model_payload(model) -> dict:
    """What a robot needs to know about a model (plain data, cacheable)."""
    artifacts = {
        a.format: {"url": f"/api/v1/models/{model.pk}/artifacts/{a.format}", "sha256": a.sha256, "size": a.size}
        for a in model.artifacts.all()
    }
    main = artifacts.get("onnx") or artifacts.get("pt") or {}
    return {
        "dataset": model.dataset.slug,
        "model_id": model.pk,
        "version": model.number,
        "sha256": main.get("sha256", ""),
        "classes": list(model.classes),
        "imgsz": model.imgsz,
        "conf_threshold": model.conf_threshold,
        "artifacts": artifacts,
    }


def cached_model_payload(model_id: int) -> dict | None:
    key = model_key(model_id)
    payload = cache.get(key)
    if payload is None:
        from apps.training.models import ModelVersion

        model = ModelVersion.objects.select_related("dataset").prefetch_related("artifacts").filter(pk=model_id).first()
        payload = model_payload(model) if model else {}
        cache.set(key, payload, STATE_TTL_S)
    return payload or None


def build_state(slug: str) -> dict:
    """Read the live deployments of a dataset from the database (``{"exists": False}`` for an unknown slug)."""
    from apps.datasets.models import Dataset
    from apps.deployments.models import Deployment

    dataset = Dataset.objects.filter(slug=slug).first()
    if dataset is None:
        return {"exists": False, "dataset": slug}
    state = {"exists": True, "dataset": slug, "dataset_id": dataset.pk, "production": None, "canary": None}
    live = (
        Deployment.objects.filter(dataset=dataset, is_live=True, model__isnull=False)
        .select_related("model__dataset")
        .prefetch_related("model__artifacts")
    )
    for deployment in live:
        state[deployment.channel] = {
            "deployment_id": deployment.pk,
            "percent": deployment.canary_percent,
            "deployed_at": deployment.created_at.isoformat().replace("+00:00", "Z"),
            "model": model_payload(deployment.model),
        }
    return state


def cached_state(slug: str, prefetched: dict | None = None) -> dict:
    key = state_key(slug)
    state = prefetched.get(key) if prefetched is not None else cache.get(key)
    if state is None:
        state = build_state(slug)
        cache.set(key, state, STATE_TTL_S)
    return state


def dataset_slugs() -> list[str]:
    """All dataset slugs (cached; invalidated when a dataset is saved or deleted)."""
    slugs = cache.get(DATASETS_KEY)
    if slugs is None:
        from apps.datasets.models import Dataset

        slugs = list(Dataset.objects.order_by("slug").values_list("slug", flat=True))
        cache.set(DATASETS_KEY, slugs, STATE_TTL_S)
    return slugs


def in_canary(serial: str, canary_deployment_id: int, percent: int) -> bool:
    """Deterministic canary membership: the same robot stays in (or out of) the same canary on every poll."""
    digest = hashlib.sha256(f"{serial}:{canary_deployment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def robot_answer(state: dict, *, serial: str, pinned_model_id: int | None) -> dict | None:
    """The model a robot should run now (the 200 body of GET /robot/model), or None when nothing is deployed."""
    chosen, channel, deployed_at = None, None, None
    if pinned_model_id:
        payload = cached_model_payload(pinned_model_id)
        if payload and payload["dataset"] == state["dataset"]:
            chosen, channel, deployed_at = payload, "pinned", None
    if chosen is None:
        canary = state.get("canary")
        if canary and in_canary(serial, canary["deployment_id"], canary["percent"] or 0):
            chosen, channel, deployed_at = canary["model"], "canary", canary["deployed_at"]
        elif state.get("production"):
            production = state["production"]
            chosen, channel, deployed_at = production["model"], "production", production["deployed_at"]
    if chosen is None:
        return None
    body = {key: value for key, value in chosen.items()}
    body["channel"] = channel
    body["deployed_at"] = deployed_at
    body["poll_after_s"] = settings.ROBOT_POLL_AFTER_S
    return body


def answer_etag(body: dict) -> str:
    return '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == "*" or candidate == etag:
            return True
    return False
