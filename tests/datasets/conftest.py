import pytest

from tests.datasets.factories import make_dataset


@pytest.fixture
def dataset(db):
    return make_dataset()
