"""Labeling services: the queue and its claims, submit with versions, review transitions, predictions."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.datasets.models import Annotation, Image
from apps.labeling import selectors, services
from apps.labeling.models import Draft, ImageClaim, LabelingEvent, Prediction, ReviewEvent
from vectormlops.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


def test_two_annotators_get_different_images_and_the_same_one_back_on_reload(dataset, make_image, make_user):
    first, second = make_image(dataset, seed=1), make_image(dataset, seed=2)
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")

    got_ann = services.image_claim_next(dataset=dataset, user=ann)
    got_bob = services.image_claim_next(dataset=dataset, user=bob)

    assert {got_ann.pk, got_bob.pk} == {first.pk, second.pk}
    # A reload hands the same image back (the annotator's own live claim comes first).
    assert services.image_claim_next(dataset=dataset, user=ann).pk == got_ann.pk
    # Nothing left for a third annotator.
    assert services.image_claim_next(dataset=dataset, user=make_user("cid", "annotator")) is None


def test_claim_ahead_excludes_the_image_on_screen(dataset, make_image, annotator):
    make_image(dataset, seed=1), make_image(dataset, seed=2)
    current = services.image_claim_next(dataset=dataset, user=annotator)
    ahead = services.image_claim_next(dataset=dataset, user=annotator, exclude_ids=[current.pk])
    assert ahead is not None and ahead.pk != current.pk
    assert ImageClaim.objects.filter(user=annotator).count() == 2


def test_an_expired_claim_is_handed_out_again(dataset, make_image, make_user):
    image = make_image(dataset, seed=1)
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")
    services.image_claim_next(dataset=dataset, user=ann)
    assert services.image_claim_next(dataset=dataset, user=bob) is None

    ImageClaim.objects.filter(image=image).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert services.image_claim_next(dataset=dataset, user=bob).pk == image.pk
    assert ImageClaim.objects.get(image=image).user == bob
    # Ann's heartbeat now finds her claim lost to Bob.
    with pytest.raises(Conflict) as exc:
        services.image_claim_renew(image=image, user=ann)
    assert exc.value.code == "claim_lost"


def test_renew_extends_the_claim(dataset, make_image, annotator):
    image = make_image(dataset, seed=1)
    services.image_claim_next(dataset=dataset, user=annotator)
    ImageClaim.objects.filter(image=image).update(expires_at=timezone.now() + timedelta(seconds=5))
    claim = services.image_claim_renew(image=image, user=annotator)
    assert claim.expires_at > timezone.now() + timedelta(minutes=9)


def test_queue_order_priority_then_disagreements_then_robot_feedback_then_least_certain_then_oldest(
    dataset, make_image, annotator
):
    oldest = make_image(dataset, seed=1)
    sure = make_image(dataset, seed=2)
    unsure = make_image(dataset, seed=3)
    feedback = make_image(dataset, seed=4, source="feedback")
    low_conf = make_image(dataset, seed=5, source="low_confidence")
    urgent = make_image(dataset, seed=6)
    disagreement = make_image(dataset, seed=7, source="shadow_disagreement")  # the newest: still before the others
    Image.objects.filter(pk=urgent.pk).update(labeling_priority=5)
    services.predictions_store(
        image=sure, boxes=[{"class_id": 0, "box": [1, 1, 20, 20], "confidence": 0.97}], source="server"
    )
    services.predictions_store(
        image=unsure, boxes=[{"class_id": 0, "box": [1, 1, 20, 20], "confidence": 0.55}], source="server"
    )

    order = []
    while (image := services.image_claim_next(dataset=dataset, user=annotator, exclude_ids=order)) is not None:
        order.append(image.pk)

    assert order == [urgent.pk, disagreement.pk, feedback.pk, low_conf.pk, unsure.pk, sure.pk, oldest.pk]


def test_skipped_image_leaves_only_that_annotators_queue(dataset, make_image, make_user):
    image = make_image(dataset, seed=1)
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")
    assert services.image_claim_next(dataset=dataset, user=ann).pk == image.pk
    services.annotation_skip(image=image, user=ann)
    assert services.image_claim_next(dataset=dataset, user=ann) is None
    assert services.image_claim_next(dataset=dataset, user=bob).pk == image.pk
    assert LabelingEvent.objects.filter(user=ann, kind="skip").count() == 1


def test_claiming_a_given_image_held_by_someone_else_is_a_conflict(dataset, make_image, make_user):
    image = make_image(dataset, seed=1)
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")
    services.image_claim(image=image, user=ann)
    with pytest.raises(Conflict) as exc:
        services.image_claim(image=image, user=bob)
    assert exc.value.details["user"] == "ann"
    assert services.image_claim_release(image=image, user=ann)
    assert services.image_claim(image=image, user=bob).user == bob


def test_submit_writes_boxes_clears_claim_and_draft_and_goes_to_review(dataset, make_image, annotator):
    make_image(dataset, seed=1)
    image = services.image_claim_next(dataset=dataset, user=annotator)
    services.draft_save(image=image, user=annotator, boxes=[{"label": "cube", "box": [1, 2, 3, 4]}])

    annotation = services.annotation_submit(
        image=image, user=annotator, boxes_api=[{"label": "cube", "box": [10, 12, 30, 20]}], version=0
    )

    assert annotation.version == 1
    assert annotation.boxes == [{"class_id": 1, "box": [10.0, 12.0, 30.0, 20.0]}]
    image.refresh_from_db()
    assert image.status == Image.Status.SUBMITTED
    assert not ImageClaim.objects.filter(image=image).exists()
    assert not Draft.objects.filter(image=image).exists()
    event = LabelingEvent.objects.get(image=image, kind="submit")
    assert event.box_count == 1 and event.duration_s is not None


def test_submit_is_approved_at_once_when_review_is_off(dataset, make_image, annotator):
    dataset.review_required = False
    dataset.save()
    image = make_image(dataset, seed=1)
    services.annotation_submit(image=image, user=annotator, boxes_api=[], version=0)
    image.refresh_from_db()
    assert image.status == Image.Status.APPROVED


def test_a_stale_version_is_a_conflict_and_saves_nothing(dataset, make_image, make_user):
    image = make_image(dataset, seed=1)
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")
    services.annotation_submit(image=image, user=bob, boxes_api=[{"label": "vector", "box": [1, 1, 9, 9]}], version=0)

    with pytest.raises(Conflict) as exc:
        services.annotation_submit(image=image, user=ann, boxes_api=[{"label": "cube", "box": [5, 5, 9, 9]}], version=0)

    assert exc.value.code == "stale_version" and exc.value.details == {"current_version": 1}
    annotation = Annotation.objects.get(image=image)
    assert annotation.version == 1 and annotation.boxes[0]["class_id"] == 0
    assert not LabelingEvent.objects.filter(user=ann).exists()


def test_review_approve_and_reject_transitions(dataset, make_image, annotator, reviewer):
    image = make_image(dataset, seed=1)
    with pytest.raises(Conflict):  # nothing submitted yet
        services.image_review(image=image, reviewer=reviewer, decision="approve")
    services.annotation_submit(image=image, user=annotator, boxes_api=[], version=0)

    with pytest.raises(ValidationFailed) as exc:
        services.image_review(image=image, reviewer=reviewer, decision="reject", comment="  ")
    assert "comment" in exc.value.details
    services.image_review(image=image, reviewer=reviewer, decision="reject", comment="The cube is missing.")
    image.refresh_from_db()
    assert image.status == Image.Status.REJECTED
    assert selectors.latest_rejection(image).comment == "The cube is missing."

    # Back in the annotator's queue, first, with the comment on the page.
    make_image(dataset, seed=2)
    assert services.image_claim_next(dataset=dataset, user=annotator).pk == image.pk

    services.annotation_submit(
        image=image, user=annotator, boxes_api=[{"label": "cube", "box": [3, 3, 10, 10]}], version=1
    )
    services.image_review(image=image, reviewer=reviewer, decision="approve")
    image.refresh_from_db()
    assert image.status == Image.Status.APPROVED
    assert selectors.latest_rejection(image) is None
    assert list(ReviewEvent.objects.filter(image=image).values_list("decision", "annotator__username")) == [
        ("approve", "annotator1"),
        ("reject", "annotator1"),
    ]
    Image.objects.filter(pk=image.pk).update(status=Image.Status.UNLABELED)
    with pytest.raises(Conflict):  # nothing submitted to review
        services.image_review(image=image, reviewer=reviewer, decision="approve")


def test_predictions_store_keeps_valid_boxes_and_measures_certainty(dataset, make_image):
    image = make_image(dataset, seed=1)
    prediction = services.predictions_store(
        image=image,
        source="robot",
        boxes=[
            {"label": "vector", "box": [10, 10, 40, 30], "confidence": 0.9},
            {"label": "cube", "box": [150, 80, 20, 20], "confidence": 0.6},  # clipped to 160x96
            {"label": "dragon", "box": [1, 1, 5, 5], "confidence": 0.99},  # unknown class: dropped
            {"label": "vector", "box": [500, 500, 5, 5], "confidence": 0.99},  # outside: dropped
        ],
    )
    assert [b["class_id"] for b in prediction.boxes] == [0, 1]
    assert prediction.boxes[1]["box"] == [150.0, 80.0, 10.0, 16.0]
    assert prediction.certainty == pytest.approx(0.6)


def test_robot_predictions_in_meta_are_stored_at_ingestion(dataset, make_image, django_capture_on_commit_callbacks):
    meta = {"model_id": 7, "predictions": [{"label": "vector", "confidence": 0.4, "box": [5, 5, 30, 30]}]}
    with django_capture_on_commit_callbacks(execute=True):
        image = make_image(dataset, seed=1, source="low_confidence", meta=meta)
    prediction = Prediction.objects.get(image=image)
    assert prediction.source == "robot" and prediction.model_id == 7
    assert prediction.certainty == pytest.approx(0.6)


def test_queue_counts(dataset, make_image, annotator):
    make_image(dataset, seed=1), make_image(dataset, seed=2)
    image = services.image_claim_next(dataset=dataset, user=annotator)
    services.annotation_submit(image=image, user=annotator, boxes_api=[], version=0)
    counts = selectors.queue_counts(dataset)
    assert counts["to_label"] == 1 and counts["to_review"] == 1 and counts["total"] == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_share_an_image(dataset, make_image, make_user):
    """Real threads, each with its own database connection (real row locks on PostgreSQL)."""
    images = [make_image(dataset, seed=i) for i in range(6)]
    users = [make_user(f"ann{i}", "annotator") for i in range(6)]
    barrier = threading.Barrier(len(users))
    results, errors = {}, []

    def work(user):
        try:
            barrier.wait(timeout=20)
            got = services.image_claim_next(dataset=dataset, user=user)
            results[user.username] = got.pk if got else None
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert not errors, errors
    claimed = [pk for pk in results.values() if pk is not None]
    assert len(claimed) == len(set(claimed)), f"an image was handed out twice: {results}"
    assert sorted(claimed) == sorted(i.pk for i in images)
    assert ImageClaim.objects.count() == len(images)


def test_annotator_stats_per_hour_and_rejection_rate(dataset, make_image, make_user, reviewer):
    from apps.labeling.selectors import annotator_stats

    ann = make_user("ann", "annotator")
    images = [make_image(dataset, seed=i) for i in range(3)]
    for image in images:
        services.image_claim(image=image, user=ann)
        ImageClaim.objects.filter(image=image).update(claimed_at=timezone.now() - timedelta(minutes=2))
        LabelingEvent.objects.update(created_at=timezone.now() - timedelta(minutes=3))  # a pause in between
        boxes = [{"label": "vector", "box": [1, 1, 10, 10]}, {"label": "cube", "box": [20, 20, 10, 10]}]
        services.annotation_submit(image=image, user=ann, boxes_api=boxes, version=0)
    services.image_review(image=images[0], reviewer=reviewer, decision="reject", comment="loose")
    services.image_review(image=images[1], reviewer=reviewer, decision="approve")

    [row] = annotator_stats(dataset=dataset)

    assert row["user"] == "ann" and row["images"] == 3 and row["boxes"] == 6
    assert row["hours"] == pytest.approx(0.1, abs=0.01)  # 3 x 2 minutes
    assert row["images_per_hour"] == pytest.approx(30, rel=0.05)
    assert row["boxes_per_hour"] == pytest.approx(60, rel=0.05)
    assert row["reviewed"] == 2 and row["rejected"] == 1 and row["rejection_rate"] == 0.5


def test_time_on_a_prefetched_image_starts_when_the_previous_one_was_done(dataset, make_image, annotator):
    make_image(dataset, seed=1), make_image(dataset, seed=2)
    current = services.image_claim_next(dataset=dataset, user=annotator)
    ahead = services.image_claim_next(dataset=dataset, user=annotator, exclude_ids=[current.pk])
    long_ago = timezone.now() - timedelta(minutes=5)
    ImageClaim.objects.update(claimed_at=long_ago)  # both claimed five minutes ago

    services.annotation_submit(image=current, user=annotator, boxes_api=[], version=0)
    services.annotation_submit(image=ahead, user=annotator, boxes_api=[], version=0)

    first, second = LabelingEvent.objects.order_by("id")
    assert first.duration_s == pytest.approx(300, abs=5)
    assert second.duration_s < 5
