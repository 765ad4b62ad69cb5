"""The dataset page's class card (ML engineers): add, rename, move up or down, merge and delete classes. One form
posts here with an ``action``; the services keep the boxes in step (apps.datasets.services.classes)."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from apps.datasets import services
from apps.datasets.models import Dataset
from vectormlops.errors import DomainError
from vectormlops.permissions import ML_ENGINEER, role_required


def _int(value) -> int | None:
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else None


def _apply(dataset: Dataset, post) -> str:
    action, class_id = post.get("action", ""), _int(post.get("class_id"))
    name = post.get("name", "").strip()
    if action == "add":
        services.dataset_class_add(dataset=dataset, name=name)
        return f"Added class {name!r}."
    if action == "rename":
        old = dataset.classes[class_id] if class_id is not None and 0 <= class_id < len(dataset.classes) else None
        services.dataset_class_rename(dataset=dataset, class_id=class_id, name=name)
        return f"Renamed {old!r} to {name!r}."
    if action in ("up", "down"):
        order = list(range(len(dataset.classes)))
        other = (class_id or 0) + (-1 if action == "up" else 1)
        if class_id is None or not (0 <= class_id < len(order) and 0 <= other < len(order)):
            return "Nothing to move."
        order[class_id], order[other] = order[other], order[class_id]
        services.dataset_classes_reorder(dataset=dataset, order=order)
        return f"Moved {dataset.classes[class_id]!r} {action}."
    if action == "merge":
        target = _int(post.get("target_id"))
        names = list(dataset.classes)
        services.dataset_class_merge(dataset=dataset, source_id=class_id, target_id=target)
        return f"Merged {names[class_id]!r} into {names[target]!r}."
    if action == "delete":
        old = dataset.classes[class_id] if class_id is not None and 0 <= class_id < len(dataset.classes) else None
        dropped = services.dataset_class_delete(dataset=dataset, class_id=class_id)
        return f"Deleted class {old!r} and its {dropped} box{'es' if dropped != 1 else ''}."
    return f"Unknown action {action!r}."


@role_required(ML_ENGINEER)
@require_POST
def dataset_classes_edit(request, slug):
    dataset = get_object_or_404(Dataset, slug=slug)
    try:
        messages.success(request, _apply(dataset, request.POST))
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("datasets:detail", slug=dataset.slug)
