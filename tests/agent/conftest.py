import pytest

from tests.agent.fakes import FakeServer


@pytest.fixture
def fake_server():
    server = FakeServer().start()
    yield server
    server.stop()
