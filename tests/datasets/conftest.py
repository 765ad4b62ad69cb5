import pytest

from tests.builders import make_dataset


@pytest.fixture
def dataset(db):
    return make_dataset()
