"""Questions deployments asks that only a later app can answer (the question-and-answer pattern of DESIGN.md).

The gate, the shadow panel and the hourly shadow re-gate read a shadow model's field evidence: counters of what it
and the live model saw on the same frames, which monitoring aggregates from telemetry into hourly buckets.
Deployments declares the question with a safe default (no evidence); monitoring installs the answer from its
``AppConfig.ready()``::

    from apps.deployments import hooks
    hooks.install_shadow_field_sums(selectors.shadow_field_sums)
"""

from collections.abc import Callable

SHADOW_GROUPS = (None, "robot", "slice", "hour")

ShadowFieldSums = Callable[..., list[dict]]

_shadow_field_sums: ShadowFieldSums | None = None


def install_shadow_field_sums(fn: ShadowFieldSums | None) -> ShadowFieldSums | None:
    """Install (or, with None, remove) the function that sums a shadow model's field counters. Returns the one it
    replaces, so a test can put it back."""
    global _shadow_field_sums
    previous, _shadow_field_sums = _shadow_field_sums, fn
    return previous


def shadow_field_sums(shadow_model_id: int, *, live_model_id: int | None = None, by: str | None = None) -> list[dict]:
    """The summed field counters of ``shadow_model_id`` (beside ``live_model_id`` only, when given).

    ``by``: None, one row for the fleet on all frames, with ``latest`` (when its newest bucket was updated); "robot",
    one row per robot (key ``robot``: its id); "slice", the fleet per lighting slice; "hour", the fleet per UTC hour.
    Counters nothing was counted for are None. Without an installed answer there is no evidence."""
    if by not in SHADOW_GROUPS:
        raise ValueError(f"by must be one of {SHADOW_GROUPS}, not {by!r}")
    if _shadow_field_sums is None:
        return [{}] if by is None else []
    return _shadow_field_sums(shadow_model_id, live_model_id=live_model_id, by=by)
