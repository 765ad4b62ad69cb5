"""Questions deployments asks that only a later app can answer (the question-and-answer pattern of DESIGN.md).

The gate, the shadow panel and the hourly shadow re-gate read a shadow model's field evidence: counters of what it
and the live model saw on the same frames, which monitoring aggregates from telemetry into hourly buckets.
Deployments declares the question with a safe default (no evidence); monitoring installs the answer from its
``AppConfig.ready()``::

    from apps.deployments import hooks
    hooks.install_shadow_field_sums(selectors.shadow_field_sums)

The deployments pages link to monitoring's page of a dataset the same way: deployments never names monitoring's URLs,
monitoring installs ``dataset_links``.
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


DatasetLinks = Callable[..., list[tuple[str, str]]]

_dataset_links: DatasetLinks | None = None


def install_dataset_links(fn: DatasetLinks | None) -> DatasetLinks | None:
    """Install (or, with None, remove) the function that lists a later app's pages about a dataset, as ``(label,
    url)`` pairs (monitoring: how its models do in the field). Returns the one it replaces, so a test can put it
    back."""
    global _dataset_links
    previous, _dataset_links = _dataset_links, fn
    return previous


def dataset_links(slug: str, *, robot: str | None = None) -> list[tuple[str, str]]:
    """The pages of later apps about the dataset ``slug`` (seen from one robot, by serial, when ``robot`` is given),
    for the deployments pages to link to; empty when no app installed an answer."""
    return list(_dataset_links(slug, robot=robot)) if _dataset_links is not None else []
