"""The cached deployment state robots are answered from (Redis through Django's cache).

Every promote, rollback, canary end, pin and revoke invalidates it on commit, so a poll that finds nothing new is
answered from the cache alone: no database query."""

import hashlib
import json

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from apps.deployments import localcache

STATE_TTL_S = 3600  # a safety net only: every change deletes the key
STATE_KEY = "deploy-state:v2:{slug}"  # bump the version when the shape changes
MODEL_KEY = "deploy-model:v2:{id}"
DATASETS_KEY = "deploy-datasets"
REPORT_KEY = "robot-report:{digest}"  # the running-model report on record for a robot token


def state_key(slug: str) -> str:
    return STATE_KEY.format(slug=slug)


def model_key(model_id: int) -> str:
    return MODEL_KEY.format(id=model_id)


def _delete(keys: list[str]) -> None:
    cache.delete_many(keys)
    localcache.forget(keys)  # other processes hear it from Redis (tracking invalidation)


def invalidate_state(slug: str) -> None:
    """Drop the cached state now and again after commit (a reader between the two would cache the old state)."""
    _delete([state_key(slug)])
    transaction.on_commit(lambda: _delete([state_key(slug)]))


def invalidate_model(model_id: int) -> None:
    _delete([model_key(model_id)])


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


def payload_digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cached_model_payload(model_id: int) -> dict | None:
    """``{"payload": ..., "digest": ...}`` of a model (pinned robots), or None if the model is gone."""
    key = model_key(model_id)
    entry = cache.get(key)
    if entry is None:
        from apps.training.models import ModelVersion

        model = ModelVersion.objects.select_related("dataset").prefetch_related("artifacts").filter(pk=model_id).first()
        payload = model_payload(model) if model else None
        entry = {"payload": payload, "digest": payload_digest(payload)} if payload else {}
        cache.set(key, entry, STATE_TTL_S)
    return entry or None


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
        payload = model_payload(deployment.model)
        state[deployment.channel] = {
            "deployment_id": deployment.pk,
            "percent": deployment.canary_percent,
            "deployed_at": deployment.created_at.isoformat().replace("+00:00", "Z"),
            "model": payload,
            "digest": payload_digest(payload),  # so a poll computes its ETag without serialising the answer
        }
    return state


def cached_state(slug: str, prefetched: dict | None = None) -> dict:
    key = state_key(slug)
    state = prefetched.get(key) if prefetched is not None else localcache.get_many([key])[key]
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


def robot_choice(state: dict, *, serial: str, pinned_model_id: int | None) -> tuple | None:
    """(model payload, its digest, channel, deployed_at) a robot should run now, or None when nothing is deployed."""
    if pinned_model_id:
        entry = cached_model_payload(pinned_model_id)
        if entry and entry["payload"]["dataset"] == state["dataset"]:
            return entry["payload"], entry["digest"], "pinned", None
    canary = state.get("canary")
    if canary and in_canary(serial, canary["deployment_id"], canary["percent"] or 0):
        return canary["model"], canary["digest"], "canary", canary["deployed_at"]
    production = state.get("production")
    if production:
        return production["model"], production["digest"], "production", production["deployed_at"]
    return None


def choice_etag(choice: tuple) -> str:
    """Quoted; changes whenever the answer does (model payload, channel, deployment time, poll interval)."""
    _, digest, channel, deployed_at = choice
    raw = f"{digest}|{channel}|{deployed_at}|{settings.ROBOT_POLL_AFTER_S}"
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def choice_body(choice: tuple) -> dict:
    """The 200 body of GET /robot/model."""
    payload, _, channel, deployed_at = choice
    return {**payload, "channel": channel, "deployed_at": deployed_at, "poll_after_s": settings.ROBOT_POLL_AFTER_S}


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
