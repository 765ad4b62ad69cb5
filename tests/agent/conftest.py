import pytest

from vectorsim.server import VirtualVector

from .fakes import FakeServer


@pytest.fixture
def fake_server():
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def vector_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def virtual_vector(vector_home):
    vector = VirtualVector("00000001", home=vector_home).start()
    yield vector
    vector.stop()
