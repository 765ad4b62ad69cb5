import pytest

from vectorsim.server import VirtualVector


@pytest.fixture
def vector_home(tmp_path, monkeypatch):
    """A home folder of its own: the SDK reads ``$HOME/.anki_vector/sdk_config.ini``."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def virtual_vector(vector_home):
    vector = VirtualVector("00000001", home=vector_home).start()
    yield vector
    vector.stop()
