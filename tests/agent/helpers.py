"""Small builders for the agent tests."""

import threading
import time

from PIL import Image

from agent.api import ApiClient
from agent.loops import Agent, RunOptions
from agent.vector import Frame, RobotLost
from tests.agent.fakes import TOKEN, constant_detector

SEEN = constant_detector([(32, 32, 16, 16, 0.9)])  # sure of one robot
UNSURE = constant_detector([(32, 32, 16, 16, 0.4)])  # in the uncertainty band
OTHER = constant_detector([(20, 20, 10, 10, 0.95)])
NOTHING = constant_detector([])


def make_agent(server, data_dir, *, token=TOKEN, link=None, spool_max_items=2000, **options) -> Agent:
    client = ApiClient(server.url, token, timeout=5)
    opts = RunOptions(dataset="vector", **options)
    return Agent(client, data_dir, opts, link=link, spool_max_items=spool_max_items)


def frame(n: int = 1, size=(128, 72)) -> Frame:
    return Frame(image=Image.new("RGB", size, (90, 90, 90)), image_id=n, captured_at=time.time(), head_angle_deg=0.0)


class FakeLink:
    """A robot link without a robot: gives grey frames, records what would be shown and said."""

    def __init__(self):
        self.stop = threading.Event()
        self.head_angle_deg = None
        self.shown, self.said = [], []
        self.n = 0

    def ensure_connected(self) -> bool:
        return not self.stop.is_set()

    def capture(self) -> Frame:
        self.n += 1
        return frame(self.n)

    def show(self, data, duration):
        self.shown.append(data)

    def say(self, text):
        self.said.append(text)

    def disconnect(self):
        pass


class DeadLink(FakeLink):
    def capture(self):
        raise RobotLost("gone")
