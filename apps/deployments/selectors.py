"""Reads of the deployments app: models with their lifecycle status, histories, live deployments."""

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, F, Max, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from apps.datasets.models import Dataset, VersionItem
from apps.deployments import gate
from apps.deployments.models import Deployment, EnrollmentKey, Evaluation, GateDecision, PromotionPolicy, Robot
from apps.training import selectors as training_selectors
from apps.training.models import ModelArtifact, ModelVersion

STATUSES = ("candidate", "production", "canary", "shadow", "retired", "rejected")


def models_with_status(dataset=None) -> QuerySet:
    """ModelVersions annotated with what the lifecycle status needs (constant number of queries for a list)."""
    live = Deployment.objects.filter(model=OuterRef("pk"), is_live=True)
    queryset = (
        ModelVersion.objects.select_related("dataset")
        .annotate(
            in_production=Exists(live.filter(channel=Deployment.Channel.PRODUCTION)),
            in_canary=Exists(live.filter(channel=Deployment.Channel.CANARY)),
            in_shadow=Exists(live.filter(channel=Deployment.Channel.SHADOW)),
            # A shadow never drove a robot: a model that only ran in shadow is still a candidate.
            was_deployed=Exists(
                Deployment.objects.filter(model=OuterRef("pk"))
                .exclude(action=Deployment.Action.END)
                .exclude(channel=Deployment.Channel.SHADOW)
            ),
        )
        .prefetch_related(
            "artifacts",
            Prefetch(
                "gate_decisions",
                queryset=GateDecision.objects.order_by("-created_at", "-id"),
                to_attr="prefetched_decisions",
            ),
        )
        .order_by("dataset__slug", "-number")
    )
    if dataset is not None:
        queryset = queryset.filter(dataset=dataset)
    return queryset


def lifecycle_status(model: ModelVersion) -> str:
    """candidate | production | canary | shadow | retired | rejected, read from deployments and gate decisions."""
    if not hasattr(model, "in_production"):
        model = models_with_status().get(pk=model.pk)
    if model.in_production:
        return "production"
    if model.in_canary:
        return "canary"
    if model.in_shadow:
        return "shadow"
    if model.was_deployed:
        return "retired"
    decisions = getattr(model, "prefetched_decisions", None) or []
    if decisions and not decisions[0].passed:
        return "rejected"
    return "candidate"


def live_deployments_query(dataset=None) -> QuerySet:
    """The live deployments (at most one per channel of a dataset: production, canary, shadow) with their models, of
    one dataset (a Dataset or its id) or of all. Every "which model is live" read starts here."""
    queryset = Deployment.objects.filter(is_live=True, model__isnull=False).select_related("model__dataset")
    return queryset if dataset is None else queryset.filter(dataset=dataset)


def live_deployment(*, dataset, channel: str = Deployment.Channel.PRODUCTION) -> Deployment | None:
    """The deployment live on ``channel`` (production unless named) for ``dataset``, with its model; None if none."""
    return live_deployments_query(dataset).filter(channel=channel).first()


def production_model(dataset) -> ModelVersion | None:
    """Which model is live in production for ``dataset`` (training fine-tunes it, the gate compares with it)."""
    deployment = live_deployment(dataset=dataset)
    return deployment.model if deployment else None


def promotion_policy_of(dataset) -> PromotionPolicy:
    """The dataset's promotion policy as the gate will apply it: the saved row, or the defaults (unsaved) when none
    exists yet. A read: the row is created by the first gate decision, never by a page view."""
    return PromotionPolicy.objects.filter(dataset=dataset).first() or PromotionPolicy(dataset=dataset)


def live_deployments(dataset) -> dict:
    """{"production": Deployment|None, "canary": Deployment|None}."""
    live = {d.channel: d for d in live_deployments_query(dataset)}
    return {"production": live.get("production"), "canary": live.get("canary")}


def datasets_with_live() -> list[dict]:
    """Every dataset (by slug) with its live production and canary deployments: ``{"dataset", "production",
    "canary"}`` rows, in two queries."""
    live = defaultdict(dict)
    for deployment in live_deployments_query():
        live[deployment.dataset_id][deployment.channel] = deployment
    return [
        {"dataset": dataset, "production": live[dataset.pk].get("production"), "canary": live[dataset.pk].get("canary")}
        for dataset in Dataset.objects.order_by("slug")
    ]


def dataset_overview(dataset) -> dict:
    """What the dataset's deployments page shows: the live deployments, the last 100 history entries (``gate_stale``:
    a production promotion that recorded a verdict against another model than the one it replaced), the last 20 gate
    decisions (``stale``: made against another production model than the one live now) and the promotion policy."""
    live = live_deployments(dataset)
    production_id = live["production"].model_id if live["production"] else None
    decisions = list(
        GateDecision.objects.filter(candidate__dataset=dataset)
        .select_related("candidate", "production")
        .order_by("-created_at", "-id")[:20]
    )
    for decision in decisions:
        decision.stale = decision.candidate_id != production_id and gate_decision_is_stale(
            decision, production_id=production_id
        )
    history = list(deployment_history(dataset).select_related("gate_decision", "previous")[:100])
    for entry in history:
        entry.gate_stale = (
            entry.gate_decision is not None
            and entry.channel == Deployment.Channel.PRODUCTION
            and entry.gate_decision.production_id != (entry.previous.model_id if entry.previous else None)
        )
    return {"live": live, "history": history, "decisions": decisions, "policy": promotion_policy_of(dataset)}


def model_registry() -> list[ModelVersion]:
    """Every model with its lifecycle ``status`` and ``latest_decision`` (``stale`` when made against another
    production model than the one live now, for a model not in production itself)."""
    models = list(models_with_status())
    production_by_dataset = {}
    for model in models:
        model.status = lifecycle_status(model)
        decisions = model.prefetched_decisions
        model.latest_decision = decisions[0] if decisions else None
        if model.latest_decision is not None:
            if model.dataset_id not in production_by_dataset:
                production_by_dataset[model.dataset_id] = production_model(model.dataset)
            production = production_by_dataset[model.dataset_id]
            model.latest_decision.stale = model.status != "production" and gate_decision_is_stale(
                model.latest_decision, production_id=production.pk if production else None
            )
    return models


def rollback_preview(dataset, channel: str = Deployment.Channel.PRODUCTION) -> tuple[ModelVersion | None, ...]:
    """(the model live on ``channel`` now, the model a rollback would bring back); either None when there is none."""
    current = live_deployment(dataset=dataset, channel=channel)
    target = rollback_target(current) if current else None
    return (current.model if current else None), (target.model if target and target.model_id else None)


def artifact_of(model_id: int, fmt: str) -> ModelArtifact | None:
    """A model's artifact in format ``fmt``; None when it has none."""
    return ModelArtifact.objects.filter(model_id=model_id, format=fmt).first()


def shadow_gates_due() -> list[ModelVersion]:
    """Live shadow models to gate again for auto-promotion: their dataset's policy auto-promotes and requires shadow
    evidence, they have the frames it asks for, and evidence arrived since their latest gate decision."""
    from apps.deployments import hooks

    due = []
    for deployment in live_deployments_query().filter(channel=Deployment.Channel.SHADOW):
        policy = PromotionPolicy.objects.filter(dataset_id=deployment.dataset_id).first()
        if policy is None or not policy.auto_promote or policy.shadow_min_frames == 0:
            continue
        seen = hooks.shadow_field_sums(deployment.model_id)[0]
        if (seen.get("frames") or 0) < policy.shadow_min_frames:
            continue
        decided = GateDecision.objects.filter(candidate_id=deployment.model_id).aggregate(at=Max("created_at"))["at"]
        if decided is None or decided < seen["latest"]:
            due.append(deployment.model)
    return due


def deployment_history(dataset) -> QuerySet:
    return (
        Deployment.objects.filter(dataset=dataset)
        .select_related("model", "created_by", "dataset")
        .order_by("-created_at", "-id")
    )


def comparison_for(candidate: ModelVersion, production: ModelVersion | None) -> tuple[dict | None, object]:
    """The side-by-side comparison of two models: from the latest gate decision between them, else from stored
    evaluations on the same test set; (None, None) when they were never evaluated together."""
    decision = (
        GateDecision.objects.filter(candidate=candidate, production=production).order_by("-created_at", "-id").first()
    )
    if decision and decision.comparison:
        return decision.comparison, decision
    evaluations = Evaluation.objects.filter(model=candidate).order_by("-created_at")
    for evaluation in evaluations:
        other = (
            Evaluation.objects.filter(model=production, test_set_sha256=evaluation.test_set_sha256).first()
            if production
            else None
        )
        if production is None or other is not None:
            return gate.compare(evaluation.metrics, other.metrics if other else None), decision
    return None, decision


def fleet() -> list[Robot]:
    """Every enrolled robot with the model it reports running (and that model's dataset), never-seen ones last;
    ``unseen``: never seen, or not for a day."""
    robots = list(
        Robot.objects.select_related("running_model__dataset", "pinned_model").order_by(
            F("last_seen_at").desc(nulls_last=True), "serial"
        )
    )
    now = timezone.now()
    for robot in robots:
        robot.unseen = robot.last_seen_at is None or now - robot.last_seen_at > timedelta(days=1)
    return robots


def rollback_target(current: Deployment) -> Deployment | None:
    """The entry whose model was live before ``current`` on the promotion stack (rollbacks pop, promotions push)."""
    entry = current
    seen = set()
    while entry is not None and entry.action == Deployment.Action.ROLLBACK and entry.pk not in seen:
        seen.add(entry.pk)
        entry = entry.restores
    if entry is None:
        return None
    return entry.previous


def deployed_model_at(dataset, channel: str, when: datetime) -> ModelVersion | None:
    """The model that was live on ``channel`` at time ``when`` (None if nothing was)."""
    entry = (
        Deployment.objects.filter(dataset=dataset, channel=channel, created_at__lte=when)
        .exclude(action=Deployment.Action.END)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=when))
        .select_related("model")
        .order_by("-created_at", "-id")
        .first()
    )
    return entry.model if entry else None


def training_images(model: ModelVersion) -> list[tuple[int, str, str]] | None:
    """(id, sha256, phash) of the images the model was trained (and early-stopped) on; None when unknown."""
    run = model.run
    if run is None or run.dataset_version_id is None:
        return None
    return list(
        VersionItem.objects.filter(version_id=run.dataset_version_id, split__in=["train", "val"]).values_list(
            "image_id", "image__sha256", "image__phash"
        )
    )


def training_runs_of(candidate: ModelVersion, production: ModelVersion | None) -> dict:
    """The candidate's and production's training runs for the promote page's overlaid curves: ``{"curves": [...],
    "ids": [...]}``, empty when either model has no run (registered from outside) or they are the same model."""
    if production is None or production == candidate or not (candidate.run_id and production.run_id):
        return {}
    runs = training_selectors.runs_for_comparison([candidate.run_id, production.run_id])
    return {"curves": training_selectors.run_curves(runs), "ids": [run.pk for run in runs]}


def enrollment_enabled() -> bool:
    """Whether robots may enrol themselves: a key in the environment or an active admin-set key."""
    return bool(settings.ROBOT_ENROLLMENT_KEY) or EnrollmentKey.objects.filter(is_active=True).exists()


def current_test_set_sha256(dataset) -> str:
    """The hash of the dataset's test set as it is now (approved test images and their boxes)."""
    from apps.deployments import evaluation as ev

    return ev.test_set_sha256(ev.current_test_set(dataset), list(dataset.classes))


def current_gate_decision(model: ModelVersion, *, production: ModelVersion | None | bool = False):
    """The newest gate decision of ``model`` that still applies: against the model live in production now (nothing,
    when ``model`` is that model) and on the test set as it is now. None: it must be computed. ``production`` when
    the caller already knows it."""
    if production is False:
        production = production_model(model.dataset)
    if production is not None and production.pk == model.pk:
        production = None
    decisions = GateDecision.objects.filter(candidate=model, production=production).order_by("-created_at", "-id")
    sha = current_test_set_sha256(model.dataset)
    # A candidate that could not be evaluated at all has no test-set hash: that verdict stands until it changes.
    return decisions.filter(Q(test_set_sha256=sha) | Q(test_set_sha256="", candidate_evaluation=None)).first()


def gate_decision_is_stale(decision: GateDecision, *, production_id: int | None) -> bool:
    """Whether a decision was made against another production model than ``production_id``."""
    return decision.production_id != production_id


def model_links(model: ModelVersion) -> list[tuple[str, str]]:
    """The pages about a model that a training run's page leads on to (installed in training's hooks): deployments'
    own and those later apps install for its dataset (monitoring's)."""
    from django.urls import reverse

    from apps.deployments import hooks

    slug = model.dataset.slug
    return [
        (f"Promote v{model.number}…", reverse("deployments:confirm_promote", args=[model.pk])),
        ("Model registry", reverse("deployments:model_list")),
        (f"Deployments of {slug}", reverse("deployments:dataset", args=[slug])),
        *((f"{label} of {slug}", url) for label, url in hooks.dataset_links(slug)),
    ]


def gate_analysis(decision: GateDecision) -> dict:
    """The stored ultralytics analyses (confusion matrix, per-class AP, curves) of a decision's two evaluations, each
    with the confidence its confusion matrix was counted at (``confusion_conf``); None where there is nothing to chart.
    The matched predictions are left out: the error viewer reads them (``error_viewer_images``)."""
    from apps.deployments.evaluation import VALIDATOR_CONF

    result = {}
    for role, evaluation in (
        ("candidate", decision.candidate_evaluation),
        ("production", decision.production_evaluation),
    ):
        analysis = (evaluation.metrics or {}).get("analysis") if evaluation is not None else None
        if not analysis or "names" not in analysis:  # nothing to chart (predictions alone are the error viewer's)
            result[role] = None
            continue
        charts = {key: value for key, value in analysis.items() if key != "predictions"}
        # Analyses stored before the matrix had its own conf were counted at the validator's.
        result[role] = {"confusion_conf": VALIDATOR_CONF, **charts}
    return result


def error_viewer_images(decision: GateDecision, *, conf: float) -> list[dict]:
    """Every test image of a decision with its ground truth and both models' predictions at ``conf`` or above, as
    ultralytics matched them at IoU 0.5: per model the true positives, false positives and misses (ground-truth
    boxes no prediction found), its slices, and how much the two models disagree on it (the page sorts by that)."""
    from apps.deployments import evaluation as ev

    items = ev.current_test_set(decision.candidate.dataset)
    slices = {index: {} for index in range(len(items))}
    for kind, groups in ev.slices_of(items).items():
        for name, indices in groups.items():
            for index in indices:
                slices[index][kind] = name
    stored = {
        role: ((evaluation.metrics or {}).get("analysis") or {}).get("predictions") if evaluation else None
        for role, evaluation in (
            ("candidate", decision.candidate_evaluation),
            ("production", decision.production_evaluation),
        )
    }
    rows = []
    for index, item in enumerate(items):
        row = {"image_id": item.image_id, "width": item.width, "height": item.height, "slices": slices[index]}
        row["truth"] = [{"class_id": b["class_id"], "box": b["box"]} for b in item.boxes]
        for role, predictions in stored.items():
            if predictions is None:
                continue
            kept = [p for p in predictions.get(item.sha256, []) if p[5] >= conf]
            true_positives = sum(1 for p in kept if p[6])
            row[role] = {
                "boxes": [{"box": p[:4], "class_id": p[4], "confidence": p[5], "tp": p[6]} for p in kept],
                "tp": true_positives,
                "fp": len(kept) - true_positives,
                "missed": max(len(item.boxes) - true_positives, 0),
            }
        if "candidate" in row and "production" in row:
            c, p = row["candidate"], row["production"]
            row["disagreement"] = abs(c["tp"] - p["tp"]) + abs(c["fp"] - p["fp"]) + abs(c["missed"] - p["missed"])
        else:
            row["disagreement"] = 0
        rows.append(row)
    return sorted(rows, key=lambda row: (-row["disagreement"], row["image_id"]))
