"""Alerts in words a person understands, and links to what they are about (images, robot, model, deployments).

The message of an alert is its headline sentence; the statistics stay in ``details`` and are folded under it."""

from datetime import UTC, timedelta
from urllib.parse import urlencode

from django.urls import reverse

# feature → (lower, higher, what is measured); how a person would say the robots' images changed.
FEATURE_WORDS = {
    "brightness": ("darker images", "brighter images", "brightness"),
    "telemetry_brightness": ("darker images", "brighter images", "brightness"),
    "contrast": ("flatter, lower-contrast images", "higher-contrast images", "contrast"),
    "telemetry_contrast": ("flatter, lower-contrast images", "higher-contrast images", "contrast"),
    "sharpness": ("blurrier images", "sharper images", "sharpness (log)"),
    "color_r": ("less red in its images", "more red in its images", "red"),
    "color_g": ("less green in its images", "more green in its images", "green"),
    "color_b": ("less blue in its images", "more blue in its images", "blue"),
    "box_area": ("smaller objects", "larger objects", "object size"),
    "box_cx": ("objects further left", "objects further right", "object position (x)"),
    "box_cy": ("objects higher in the frame", "objects lower in the frame", "object position (y)"),
}
ALERT_LOOKBACK_MINUTES = 60  # an alert without a judged window of its own: the images of the hour before it
MUCH_PSI = 0.5  # a PSI this large is a big shift, said as "much"


def drift_sentence(subject: str, results: list[dict]) -> str:
    """ "Robot Vector-0001 sees much darker images than the model was trained on: brightness 0.21 vs 0.48"; the
    feature with the largest PSI leads, the other drifted ones follow briefly."""
    drifted = sorted((r for r in results if r.get("drifted")), key=lambda r: -(r.get("psi") or 0))
    if not drifted:
        return f"{subject} sees images like the ones the model was trained on."
    lead, *others = drifted
    lower, higher, measured = FEATURE_WORDS.get(lead["feature"], ("lower values", "higher values", lead["feature"]))
    change = lower if lead["cur_mean"] < lead["ref_mean"] else higher
    much = "much " if (lead.get("psi") or 0) >= MUCH_PSI else ""
    sentence = (
        f"{subject} sees {much}{change} than the model was trained on: "
        f"{measured} {lead['cur_mean']:.2f} vs {lead['ref_mean']:.2f}"
    )
    seen = {measured}
    also = []
    for result in others:
        name = FEATURE_WORDS.get(result["feature"], ("", "", result["feature"]))[2]
        if name not in seen:
            seen.add(name)
            also.append(f"{name} {result['cur_mean']:.2f} vs {result['ref_mean']:.2f}")
    return sentence + (f" (also {', '.join(also)})" if also else "") + "."


def scope_subject(robot) -> str:
    return f"Robot {robot.name or robot.serial}" if robot is not None else "The fleet"


def alert_headline(alert) -> str:
    return alert.message


def _utc(moment) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def images_link(alert) -> str | None:
    """The dataset grid narrowed to the images the alert is about: the ones drift queued, else the uploads (of its
    robot, when it has one) in the alert's time window: from the start of the period that first raised it (its
    judged window, else an hour) until it resolved (open-ended while it is open)."""
    details = alert.details or {}
    params = {}
    ids = details.get("queued_for_labeling") or details.get("image_ids")
    if ids:
        params["ids"] = ",".join(str(i) for i in ids[:200])
    else:
        if alert.robot_id:
            params["robot"] = alert.robot.serial
        minutes = details.get("window_minutes") or ALERT_LOOKBACK_MINUTES
        params["uploaded_after"] = _utc(alert.first_seen - timedelta(minutes=minutes))
        if alert.resolved_at:
            params["uploaded_before"] = _utc(alert.resolved_at)
    return reverse("datasets:detail", args=[alert.dataset.slug]) + "?" + urlencode(params)


def alert_links(alert) -> dict[str, str]:
    """Site paths of what an alert is about, by name."""
    links = {"images": images_link(alert), "monitoring": reverse("monitoring:dataset", args=[alert.dataset.slug])}
    if alert.robot_id:
        links["robot"] = reverse("monitoring:dataset", args=[alert.dataset.slug]) + f"?robot={alert.robot.serial}"
    if (alert.details or {}).get("model_id"):
        links["model"] = (
            reverse("deployments:dataset", args=[alert.dataset.slug]) + f"#model-{alert.details['model_id']}"
        )
    links["deployments"] = reverse("deployments:dataset", args=[alert.dataset.slug])
    return links
