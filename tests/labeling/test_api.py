"""Labeling API: annotations with versions (shared/API.md), review, the page's claim endpoints, and bad input."""

import pytest

from apps.datasets.models import Annotation, Image
from apps.labeling.models import Draft, ImageClaim

pytestmark = pytest.mark.django_db


def url(image):
    return f"/api/v1/images/{image.pk}/annotations"


def test_get_put_get_round_trip_in_pixels(dataset, make_image, annotator, api_as):
    image = make_image(dataset, seed=1)
    client = api_as(annotator)
    assert client.get(url(image)).json() == {"version": 0, "boxes": [], "status": "unlabeled"}

    boxes = [{"label": "vector", "box": [10.5, 20, 40, 30]}, {"label": "charger", "box": [100, 50, 60, 46]}]
    response = client.put(url(image), {"version": 0, "boxes": boxes}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 1
    body = client.get(url(image)).json()
    assert body == {"version": 1, "boxes": boxes, "status": "submitted"}


def test_stale_version_is_409_and_keeps_the_other_persons_boxes(dataset, make_image, make_user, api_as):
    image = make_image(dataset, seed=1)
    ann, bob = api_as(make_user("ann", "annotator")), api_as(make_user("bob", "annotator"))
    assert (
        bob.put(
            url(image), {"version": 0, "boxes": [{"label": "cube", "box": [1, 1, 5, 5]}]}, format="json"
        ).status_code
        == 200
    )

    response = ann.put(url(image), {"version": 0, "boxes": []}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "stale_version" and error["details"]["current_version"] == 1
    assert ann.get(url(image)).json()["boxes"] == [{"label": "cube", "box": [1.0, 1.0, 5.0, 5.0]}]


BAD_BODIES = {
    "zero width": {"version": 0, "boxes": [{"label": "vector", "box": [10, 10, 0, 5]}]},
    "negative height": {"version": 0, "boxes": [{"label": "vector", "box": [10, 10, 5, -5]}]},
    "outside the image": {"version": 0, "boxes": [{"label": "vector", "box": [150, 10, 30, 5]}]},
    "negative origin": {"version": 0, "boxes": [{"label": "vector", "box": [-20, 10, 30, 5]}]},
    "unknown class": {"version": 0, "boxes": [{"label": "dragon", "box": [10, 10, 5, 5]}]},
    "too many boxes": {"version": 0, "boxes": [{"label": "vector", "box": [1, 1, 2, 2]}] * 501},
    "box not a list": {"version": 0, "boxes": [{"label": "vector", "box": "10,10,5,5"}]},
    "box with three numbers": {"version": 0, "boxes": [{"label": "vector", "box": [1, 2, 3]}]},
    "box with text": {"version": 0, "boxes": [{"label": "vector", "box": [1, 2, "x", 4]}]},
    "item not an object": {"version": 0, "boxes": [[1, 2, 3, 4]]},
    "boxes not a list": {"version": 0, "boxes": {"label": "vector"}},
    "boxes missing": {"version": 0},
    "label missing": {"version": 0, "boxes": [{"box": [1, 2, 3, 4]}]},
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_boxes_are_400_naming_the_field_and_save_nothing(case, dataset, make_image, annotator, api_as):
    image = make_image(dataset, seed=1)  # 160 x 96
    client = api_as(annotator)
    assert (
        client.put(
            url(image), {"version": 0, "boxes": [{"label": "cube", "box": [1, 1, 5, 5]}]}, format="json"
        ).status_code
        == 200
    )
    body = dict(BAD_BODIES[case])
    body["version"] = 1

    response = client.put(url(image), body, format="json")

    assert response.status_code == 400, response.json()
    assert "boxes" in response.json()["error"]["details"], response.json()
    annotation = Annotation.objects.get(image=image)
    assert annotation.version == 1 and annotation.boxes == [{"class_id": 1, "box": [1.0, 1.0, 5.0, 5.0]}]


@pytest.mark.parametrize(
    "body",
    [{"boxes": []}, {"version": "one", "boxes": []}, {"version": -1, "boxes": []}],
    ids=["missing", "text", "negative"],
)
def test_bad_version_is_400_naming_version(body, dataset, make_image, annotator, api_as):
    image = make_image(dataset, seed=1)
    response = api_as(annotator).put(url(image), body, format="json")
    assert response.status_code == 400
    assert "version" in response.json()["error"]["details"]
    assert not Annotation.objects.filter(image=image).exists()


def test_malformed_json_is_400(dataset, make_image, annotator, api_as):
    image = make_image(dataset, seed=1)
    response = api_as(annotator).put(url(image), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert not Annotation.objects.filter(image=image).exists()


def test_permissions(dataset, make_image, make_user, api_as, reviewer):
    image = make_image(dataset, seed=1)
    assert api_as(None).get(url(image)).status_code == 401
    assert api_as(make_user("nobody")).get(url(image)).status_code == 403
    annotator = make_user("ann", "annotator")
    api_as(annotator).put(url(image), {"version": 0, "boxes": []}, format="json")
    review_url = f"/api/v1/images/{image.pk}/review"
    assert api_as(annotator).post(review_url, {"decision": "approve"}, format="json").status_code == 403
    assert api_as(reviewer).get(url(image)).status_code == 200  # reviewer includes annotator
    assert api_as(None).get("/api/v1/images/999999/annotations").status_code == 401
    assert api_as(annotator).get("/api/v1/images/999999/annotations").status_code == 404


def test_review_api(dataset, make_image, annotator, reviewer, api_as):
    image = make_image(dataset, seed=1)
    api_as(annotator).put(url(image), {"version": 0, "boxes": []}, format="json")
    review_url = f"/api/v1/images/{image.pk}/review"
    client = api_as(reviewer)

    bad = client.post(review_url, {"decision": "maybe"}, format="json")
    assert bad.status_code == 400 and "decision" in bad.json()["error"]["details"]
    no_comment = client.post(review_url, {"decision": "reject"}, format="json")
    assert no_comment.status_code == 400 and "comment" in no_comment.json()["error"]["details"]

    response = client.post(review_url, {"decision": "reject", "comment": "Box too loose"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert client.post(review_url, {"decision": "approve"}, format="json").status_code == 409

    # The annotator sees the comment on the page's image bundle.
    bundle = api_as(annotator).get(f"/api/v1/labeling/images/{image.pk}").json()
    assert bundle["rejection"]["comment"] == "Box too loose"
    assert bundle["url"] == f"/datasets/images/{image.pk}/file"


def test_page_endpoints_claim_next_renew_draft_skip(dataset, make_image, annotator, api_as):
    first, second = make_image(dataset, seed=1), make_image(dataset, seed=2)
    client = api_as(annotator)

    current = client.post("/api/v1/labeling/datasets/robots/next", {}, format="json").json()
    ahead = client.post("/api/v1/labeling/datasets/robots/next", {"exclude": [current["image"]["id"]]}, format="json")
    ahead = ahead.json()
    assert {current["image"]["id"], ahead["image"]["id"]} == {first.pk, second.pk}
    assert ahead["counts"]["claimed"] == 2

    renewed = client.post("/api/v1/labeling/claims/renew", {"image_ids": [first.pk, second.pk]}, format="json")
    assert {r["image_id"] for r in renewed.json()["renewed"]} == {first.pk, second.pk}

    draft_url = f"/api/v1/labeling/images/{first.pk}/draft"
    saved = client.put(
        draft_url, {"boxes": [{"label": "vector", "box": [1, 2, 3, 4]}], "base_version": 0}, format="json"
    )
    assert saved.status_code == 200
    bundle = client.get(f"/api/v1/labeling/images/{first.pk}").json()
    assert bundle["draft"]["boxes"] == [{"label": "vector", "box": [1.0, 2.0, 3.0, 4.0]}]
    bad_draft = client.put(draft_url, {"boxes": [{"label": "vector", "box": [1, 2]}]}, format="json")
    assert bad_draft.status_code == 400 and "boxes" in bad_draft.json()["error"]["details"]
    assert Draft.objects.get(image=first).boxes[0]["box"] == [1.0, 2.0, 3.0, 4.0]

    assert client.post(f"/api/v1/labeling/images/{second.pk}/skip", {}, format="json").status_code == 200
    assert not ImageClaim.objects.filter(image=second).exists()
    assert client.post(f"/api/v1/labeling/images/{first.pk}/release", {}, format="json").json() == {"released": True}
    queue = client.get("/api/v1/labeling/datasets/robots/queue").json()
    assert queue["counts"]["claimed"] == 0 and queue["claims"] == []


def test_claiming_an_image_held_by_someone_else_is_409(dataset, make_image, make_user, api_as):
    image = make_image(dataset, seed=1)
    assert api_as(make_user("ann", "annotator")).post(f"/api/v1/labeling/images/{image.pk}", {}).status_code == 200
    response = api_as(make_user("bob", "annotator")).post(f"/api/v1/labeling/images/{image.pk}", {})
    assert response.status_code == 409 and response.json()["error"]["details"]["user"] == "ann"


def test_pages_render(dataset, make_image, client, annotator, reviewer):
    image = make_image(dataset, seed=1)
    client.force_login(annotator)
    assert client.get("/label/").status_code == 200
    page = client.get(f"/label/robots/?image={image.pk}")
    assert page.status_code == 200 and b"konva.min.js" in page.content
    assert client.get("/review/").status_code == 403
    client.force_login(reviewer)
    Image.objects.filter(pk=image.pk).update(status="submitted")
    assert client.get("/review/").status_code == 200
    review = client.get("/review/robots/")
    assert review.status_code == 200 and review.context["config"]["bundle"]["id"] == image.pk
    assert review.context["config"]["mode"] == "review" and b"label.js" in review.content
    assert client.get("/review/robots/suspects/").status_code == 200
    assert client.get("/labeling/stats/").status_code == 200
    assert client.get("/labeling/stats/?dataset=robots").status_code == 200


def test_the_review_queue_answers_what_the_review_page_shows_for_its_filters(
    dataset, make_image, make_user, api_as, django_assert_max_num_queries
):
    from apps.labeling.services import annotation_submit

    ann, bob, rita = make_user("ann", "annotator"), make_user("bob", "annotator"), make_user("rita", "reviewer")
    box = [{"label": "vector", "box": [10, 10, 40, 30]}]
    submitted = []
    for seed, user, source in ((1, ann, "camera"), (2, ann, "camera"), (3, bob, "camera"), (4, bob, "upload")):
        image = make_image(dataset, seed=seed, source=source)
        annotation_submit(image=image, user=user, boxes_api=box, version=0)
        submitted.append(image.pk)
    client, queue = api_as(rita), "/api/v1/labeling/datasets/robots/review-queue"

    with django_assert_max_num_queries(8):
        body = client.get(queue).json()
    assert body == {"waiting": 4, "waiting_ids": submitted, "suspects": 0}
    assert client.get(queue, {"annotator": "bob"}).json()["waiting_ids"] == submitted[2:]
    assert client.get(queue, {"annotator": "bob", "source": "upload"}).json()["waiting_ids"] == submitted[3:]
    assert client.get(queue, {"annotator": "nobody"}).json() == {"waiting": 0, "waiting_ids": [], "suspects": 0}
    assert api_as(ann).get(queue).status_code == 403
