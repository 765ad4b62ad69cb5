"""ML engineers manage the retraining schedule and the retrain policies on the site (Chromium), through the
training services; django-celery-beat's PeriodicTask is what beat runs."""

import os

import pytest
from django_celery_beat.models import PeriodicTask

from apps.training.models import RetrainPolicy
from tests.builders import dataset_row
from tests.conftest import log_in


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_schedule_and_policy_are_set_from_the_site(open_browser, live_server, make_user):
    make_user("eng", "ml_engineer")
    dataset = dataset_row("sched")
    page = open_browser()
    log_in(page, live_server, "eng")
    page.click("nav >> text=Retraining")
    assert page.url.endswith("/training/retraining/")
    assert page.locator("nav a.nav-link.active").all_text_contents() == ["Retraining"]

    page.fill("#id_every_minutes", "30")
    page.uncheck("#id_enabled")
    page.click("#schedule-form button")
    page.wait_for_selector("text=Retraining schedule saved.")
    task = PeriodicTask.objects.get(task="apps.training.tasks.retrain_schedule_task")
    assert (task.interval.every, task.interval.period, task.enabled) == (30, "minutes", False)

    page.click(f"#policies a[href='/training/retraining/{dataset.slug}/']")
    page.fill("#id_min_new_approved_images", "0")
    page.click("#policy-form button[type=submit]")
    # The browser refuses it before it is sent (the form's min).
    assert page.evaluate("document.querySelector('#id_min_new_approved_images').validity.rangeUnderflow")
    assert not RetrainPolicy.objects.exists()
    page.fill("#id_min_new_approved_images", "25")
    page.fill("#id_epochs", "12")
    page.click("#policy-form button[type=submit]")
    page.wait_for_selector("text=Retrain policy of sched saved.")
    policy = RetrainPolicy.objects.get(dataset=dataset)
    assert (policy.min_new_approved_images, policy.epochs, policy.enabled) == (25, 12, True)
    assert "after 25 new approved images" in page.text_content("#policies")
    os.makedirs("var/screenshots", exist_ok=True)
    page.screenshot(path="var/screenshots/retraining.png", full_page=True)
    assert page.js_errors == []
