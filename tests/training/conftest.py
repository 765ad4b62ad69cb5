"""Training fixtures: a tiny approved dataset (tests.builders.make_training_dataset), signal receivers held back."""

import pytest

from tests.builders import make_training_dataset


@pytest.fixture
def training_dataset(db):
    return make_training_dataset()


@pytest.fixture(autouse=True)
def _only_test_receivers_of_model_trained():
    """Training's tests check that model_trained is sent; what deployments does on it (evaluation, gate) is tested
    there, and would only add work to these tests' worker and race their database teardown."""
    from apps.training.signals import model_trained

    saved = model_trained.receivers[:]
    model_trained.receivers = []
    model_trained.sender_receivers_cache.clear()
    yield
    model_trained.receivers = saved
    model_trained.sender_receivers_cache.clear()
