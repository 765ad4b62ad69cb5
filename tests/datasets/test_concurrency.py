"""Concurrent uploads of the same bytes end with one row (unique constraint + re-fetch), on SQLite and PostgreSQL."""

import io
import threading

from django.db import connection

from apps.datasets.models import Image
from apps.datasets.services import image_ingest
from tests.builders import jpeg, make_dataset


def test_concurrent_uploads_of_the_same_bytes_end_with_one_row(transactional_db):
    dataset = make_dataset("race")
    data = jpeg(42)
    start = threading.Barrier(4)
    results, errors = [], []

    def upload():
        try:
            start.wait(timeout=10)
            image, created = image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source="camera")
            results.append((image.pk, created))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert Image.objects.count() == 1
    assert {pk for pk, _ in results} == {Image.objects.get().pk}
    assert sorted(created for _, created in results) == [False, False, False, True]
