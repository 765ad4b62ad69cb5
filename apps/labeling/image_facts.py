"""What labeling knows about one image, for the datasets app's read-only image page: who labelled and reviewed it
and when, and the model's prediction (its boxes drawn as a layer)."""

from django.utils import timezone

from apps.datasets.panels import ImageFacts
from apps.labeling.models import LabelingEvent, Prediction, ReviewEvent

HISTORY_ROWS = 10


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def labeling_image_facts(image, user) -> list[ImageFacts]:
    events = [
        (event.created_at, f"{event.kind} by {event.user}", f"{event.box_count} boxes")
        for event in LabelingEvent.objects.filter(image=image)
        .select_related("user")
        .order_by("-created_at")[:HISTORY_ROWS]
    ]
    events += [
        (
            review.created_at,
            f"{review.decision} by {review.reviewer or 'someone'}",
            f"edit {review.annotation_version}" + (f": {review.comment}" if review.comment else ""),
        )
        for review in ReviewEvent.objects.filter(image=image).select_related("reviewer")[:HISTORY_ROWS]
    ]
    history = ImageFacts(
        title="Labelled and reviewed",
        rows=[(_when(at), f"{who} · {what}") for at, who, what in sorted(events, reverse=True)[:HISTORY_ROWS]],
    )
    prediction = Prediction.objects.filter(image=image).first()
    if prediction is None:
        return [history]
    model = f"model {prediction.model_id}" if prediction.model_id else "the robot"
    facts = ImageFacts(
        title=f"Prediction ({prediction.source})",
        rows=[
            ("by", model),
            ("boxes", str(len(prediction.boxes))),
            ("certainty", f"{prediction.certainty:.2f}"),
            ("at", _when(prediction.created_at)),
        ],
        boxes=prediction.boxes,
    )
    return [history, facts]
