"""Issue 15's workflow rules: approved images are the reviewers', claims are taken over only on purpose, skips come
back, reviewers' edits are theirs, batch approval, and labels the model doubts (planted wrong boxes rank first)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.datasets.models import Annotation, Image
from apps.datasets.services import annotation_set, dataset_class_merge
from apps.labeling import selectors, services
from apps.labeling.models import LabelingEvent, Prediction, ReviewEvent
from apps.labeling.suspects import image_doubt, label_doubts
from vectormlops.errors import Conflict

pytestmark = pytest.mark.django_db

VECTOR, CUBE, CHARGER = 0, 1, 2


def approved(dataset, make_image, seed, boxes, user=None):
    image = make_image(dataset, seed=seed)
    annotation_set(image=image, boxes=boxes, user=user, status=Image.Status.APPROVED)
    image.refresh_from_db()
    return image


def test_an_approved_image_is_read_only_for_annotators_and_reopened_by_a_reviewer_with_a_reason(
    dataset, make_image, annotator, reviewer
):
    image = approved(dataset, make_image, 1, [{"class_id": VECTOR, "box": [2, 2, 20, 20]}], user=annotator)
    with pytest.raises(Conflict) as caught:
        services.image_claim(image=image, user=annotator)
    assert caught.value.code == "approved"
    with pytest.raises(Conflict) as caught:
        services.annotation_submit(image=image, user=annotator, boxes_api=[], version=1)
    assert caught.value.code == "approved"
    assert selectors.image_bundle(image=image, user=annotator)["read_only"]
    assert selectors.image_bundle(image=image, user=reviewer)["read_only"] is None

    services.image_review(image=image, reviewer=reviewer, decision="reject", comment="The box misses the lift.")
    image.refresh_from_db()
    assert image.status == Image.Status.REJECTED
    event = ReviewEvent.objects.get(image=image)
    assert (event.reviewer, event.comment, event.annotator) == (reviewer, "The box misses the lift.", annotator)
    # Back first to the person who labelled it, with the comment.
    make_image(dataset, seed=2)
    assert services.image_claim_next(dataset=dataset, user=annotator).pk == image.pk
    assert selectors.image_bundle(image=image, user=annotator)["rejection"]["comment"] == "The box misses the lift."


def test_someone_elses_claim_is_only_taken_over_on_purpose(dataset, make_image, make_user):
    image = make_image(dataset, seed=1)
    ann, bob = make_user("ann", "annotator"), make_user("bob", "annotator")
    services.image_claim(image=image, user=ann)
    with pytest.raises(Conflict) as caught:
        services.image_claim(image=image, user=bob)
    assert caught.value.code == "claimed" and caught.value.details["user"] == "ann"
    with pytest.raises(Conflict) as caught:
        services.annotation_submit(image=image, user=bob, boxes_api=[], version=0)
    assert caught.value.code == "claimed"
    assert not Annotation.objects.filter(image=image).exists(), "nothing saved, ann's claim kept"
    assert image.claim.user == ann

    services.image_claim(image=image, user=bob, take_over=True)
    image.refresh_from_db()
    assert image.claim.user == bob
    with pytest.raises(Conflict) as caught:
        services.image_claim_renew(image=image, user=ann)
    assert caught.value.code == "claim_lost"
    services.annotation_submit(image=image, user=bob, boxes_api=[], version=0)


def test_a_skipped_image_comes_back_after_the_set_time_and_the_empty_queue_says_why(dataset, make_image, annotator):
    image = make_image(dataset, seed=1)
    services.image_claim_next(dataset=dataset, user=annotator)
    services.annotation_skip(image=image, user=annotator)
    assert services.image_claim_next(dataset=dataset, user=annotator) is None
    why = selectors.queue_empty_reason(dataset=dataset, user=annotator)
    assert why["skipped"] == 1 and why["skipped_return_at"]

    LabelingEvent.objects.filter(image=image).update(
        created_at=timezone.now() - services.SKIP_RETURNS_AFTER - timedelta(seconds=1)
    )
    assert services.image_claim_next(dataset=dataset, user=annotator).pk == image.pk


def test_a_reviewers_edit_is_saved_as_theirs_and_a_stale_one_changes_nothing(dataset, make_image, annotator, reviewer):
    image = make_image(dataset, seed=1)
    services.annotation_submit(
        image=image, user=annotator, boxes_api=[{"label": "cube", "box": [1, 1, 10, 10]}], version=0
    )
    with pytest.raises(Conflict) as caught:
        services.image_review(
            image=image, reviewer=reviewer, decision="approve", boxes_api=[], version=0
        )  # based on an older version
    assert caught.value.code == "stale_version"
    assert Image.objects.get(pk=image.pk).status == Image.Status.SUBMITTED

    boxes = [{"label": "vector", "box": [1, 1, 12, 10]}]
    event = services.image_review(image=image, reviewer=reviewer, decision="approve", boxes_api=boxes, version=1)
    annotation = Annotation.objects.get(image=image)
    assert annotation.updated_by == reviewer and annotation.version == 2 == event.annotation_version
    assert event.annotator == annotator, "the rejection rate still counts the annotator's submission"
    assert annotation.boxes == [{"class_id": VECTOR, "box": [1.0, 1.0, 12.0, 10.0]}]


def test_batch_approval_approves_only_the_submitted_images_asked_for(dataset, make_image, annotator, reviewer):
    images = [make_image(dataset, seed=i) for i in range(1, 5)]
    for image in images[:3]:
        services.annotation_submit(image=image, user=annotator, boxes_api=[], version=0)
    ids = [images[0].pk, images[1].pk, images[3].pk]  # the last is unlabeled: left alone
    assert services.images_approve_batch(dataset=dataset, reviewer=reviewer, image_ids=ids) == 2
    statuses = dict(Image.objects.filter(dataset=dataset).values_list("pk", "status"))
    assert [statuses[i.pk] for i in images] == ["approved", "approved", "submitted", "unlabeled"]
    assert ReviewEvent.objects.filter(decision="approve", reviewer=reviewer).count() == 2


# --- labels the model doubts ----------------------------------------------------------------------------------------

TRUTH = [
    {"class_id": VECTOR, "box": [10, 10, 40, 30]},
    {"class_id": CUBE, "box": [90, 40, 20, 20]},
]


def model_sees(truth, confidence=0.9):
    return [{**b, "confidence": confidence} for b in truth]


def test_planted_wrong_boxes_score_above_correct_ones_with_a_reason_each():
    names = ["vector", "cube", "charger"]
    predictions = model_sees(TRUTH)
    correct = label_doubts(TRUTH, predictions, names)
    shifted = label_doubts([{**TRUTH[0], "box": [25, 18, 40, 30]}, TRUTH[1]], predictions, names)
    wrong_class = label_doubts([TRUTH[0], {**TRUTH[1], "class_id": CHARGER}], predictions, names)
    missing = label_doubts([TRUTH[0]], predictions, names)
    invented = label_doubts([*TRUTH, {"class_id": VECTOR, "box": [130, 5, 20, 20]}], predictions, names)

    assert correct == [] and image_doubt(correct) == 0
    assert [r["kind"] for r in shifted] == ["loose"] and shifted[0]["suggested_box"] == [10, 10, 40, 30]
    assert [(r["kind"], r["label"], r["predicted"]) for r in wrong_class] == [("wrong_class", "charger", "cube")]
    assert [(r["kind"], r["predicted"]) for r in missing] == [("missing", "cube")]
    assert [r["kind"] for r in invented] == ["unsupported"]
    for reasons in (shifted, wrong_class, missing, invented):
        assert image_doubt(reasons) > 0.2


def test_the_suspect_queue_ranks_planted_errors_first_and_remembers_the_verdict(dataset, make_image, reviewer):
    predictions = model_sees(TRUTH)
    good = [approved(dataset, make_image, seed, TRUTH) for seed in (1, 2, 3)]
    shifted = approved(dataset, make_image, 4, [{**TRUTH[0], "box": [24, 16, 40, 30]}, TRUTH[1]])
    wrong = approved(dataset, make_image, 5, [TRUTH[0], {**TRUTH[1], "class_id": CHARGER}])
    missing = approved(dataset, make_image, 6, [TRUTH[0]])
    for image in [*good, shifted, wrong, missing]:
        services.suspects_store(image=image, model_id=7, predictions=predictions)

    queue = list(selectors.suspect_queue(dataset, min_score=0.0))
    ranked = [s.image_id for s in queue]
    planted = {shifted.pk, wrong.pk, missing.pk}
    assert set(ranked[:3]) == planted, "every planted error ranks above every correct image"
    assert all(s.score == 0 for s in queue[3:])
    assert [s.image_id for s in selectors.suspect_queue(dataset)] == ranked[:3], "correct images are not listed"
    reasons = {s.image_id: [r["kind"] for r in s.reasons] for s in queue}
    assert reasons[wrong.pk] == ["wrong_class"] and reasons[missing.pk] == ["missing"]

    services.suspect_verdict(image=wrong, reviewer=reviewer, verdict="correct")
    services.suspects_store(image=wrong, model_id=8, predictions=predictions)  # the next evaluation
    assert wrong.pk not in [s.image_id for s in selectors.suspect_queue(dataset)], "the verdict is remembered"
    annotation_set(image=wrong, boxes=[TRUTH[0]], user=reviewer)  # the boxes change: ask again
    services.suspects_store(image=wrong, model_id=8, predictions=predictions)
    assert wrong.pk in [s.image_id for s in selectors.suspect_queue(dataset)]


def test_stored_predictions_follow_a_class_merge(dataset, make_image):
    image = make_image(dataset, seed=1)
    services.predictions_store(
        image=image,
        source="robot",
        boxes=[
            {"label": "charger", "box": [1, 1, 10, 10], "confidence": 0.9},
            {"label": "cube", "box": [20, 20, 10, 10], "confidence": 0.8},
        ],
    )
    dataset_class_merge(dataset=dataset, source_id=CUBE, target_id=VECTOR)
    assert [b["class_id"] for b in Prediction.objects.get(image=image).boxes] == [1, 0]  # charger moved up


def test_a_young_model_gets_a_lower_bar_for_confident_so_its_missing_boxes_still_count():
    from apps.labeling.suspects import CONFIDENT, calibrated_confidence

    names = ["vector", "cube", "charger"]
    weak = model_sees(TRUTH, confidence=0.36)  # right, but never sure
    pairs = [(TRUTH, weak)] * 3
    confident = calibrated_confidence(pairs)
    assert 0.25 <= confident < 0.36 and calibrated_confidence(pairs[:1]) == CONFIDENT, "too few matches: default"
    assert label_doubts([TRUTH[0]], weak, names) == [], "at 0.5 the weak model's boxes count for nothing"
    missing = label_doubts([TRUTH[0]], weak, names, confident)
    assert [(r["kind"], r["predicted"]) for r in missing] == [("missing", "cube")]
    faint = label_doubts([{"class_id": VECTOR, "box": [130, 5, 20, 20]}], [], names)
    seen_faintly = label_doubts(
        [{"class_id": VECTOR, "box": [130, 5, 20, 20]}],
        [{"class_id": VECTOR, "box": [131, 6, 20, 20], "confidence": 0.2}],
        names,
    )
    assert faint[0]["score"] > seen_faintly[0]["score"] > 0, "a faint detection there doubts the label less"
