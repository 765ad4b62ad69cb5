"""The real SDK (anki_vector.Robot) against the virtual Vector."""

import configparser
import json
import math
import subprocess
import sys
import time
import urllib.request

import anki_vector
import pytest
from anki_vector.exceptions import VectorException
from anki_vector.util import degrees
from PIL import Image

from vectorsim.server import VirtualVector

RED = (255, 0, 0)


def test_real_sdk_connects_captures_moves_head_shows_screen_and_speaks(virtual_vector):
    with anki_vector.Robot(serial="00000001", default_logging=False) as robot:
        image = robot.camera.capture_single_image()
        robot.behavior.set_head_angle(degrees(10))
        screen = anki_vector.screen.convert_image_to_screen_data(Image.new("RGB", (184, 96), RED))
        robot.screen.set_screen_with_image_data(screen, 1.0)
        robot.behavior.say_text("hello there")

    assert image.raw_image.size == (640, 360)
    assert image.image_id == 1
    assert virtual_vector.frames[1]["source"] == "generated"
    assert math.isclose(virtual_vector.head_angle_rad, math.radians(10), abs_tol=1e-4)
    assert virtual_vector.spoken == ["hello there"]
    assert len(virtual_vector.screens) == 1
    assert virtual_vector.screens[0].image.getpixel((0, 0)) == RED
    assert virtual_vector.screens[0].duration_ms == 1000
    assert virtual_vector.counters["connections"] == 1


def test_sdk_config_section_is_what_the_sdk_reads(virtual_vector, vector_home):
    parser = configparser.ConfigParser()
    parser.read(vector_home / ".anki_vector" / "sdk_config.ini")
    section = parser["00000001"]
    assert section["name"] == "Vector-0001"
    assert section["ip"] == "127.0.0.1"
    assert int(section["port"]) == virtual_vector.port
    assert "BEGIN CERTIFICATE" in open(section["cert"]).read()
    assert section["guid"] == virtual_vector.guid


def test_two_virtual_vectors_share_one_sdk_config(virtual_vector, vector_home):
    second = VirtualVector("00000002", home=vector_home, name="Vector-B2B2").start()
    try:
        parser = configparser.ConfigParser()
        parser.read(vector_home / ".anki_vector" / "sdk_config.ini")
        assert set(parser.sections()) == {"00000001", "00000002"}
        with anki_vector.Robot(serial="00000002", default_logging=False) as robot:
            robot.behavior.say_text("second")
        assert second.spoken == ["second"] and virtual_vector.spoken == []
    finally:
        second.stop()


def test_wrong_guid_is_refused(virtual_vector):
    robot = anki_vector.Robot(serial="00000001", config={"guid": "not-the-secret"}, default_logging=False)
    with pytest.raises(VectorException):
        robot.connect(timeout=5)
    # The refused client's connection thread is left to the SDK; make sure it is closed.
    robot.conn.close()


def test_scene_brightness_darkens_the_camera(virtual_vector):
    with anki_vector.Robot(serial="00000001", default_logging=False) as robot:
        bright = robot.camera.capture_single_image().raw_image
        virtual_vector.set_scene(brightness=0.3)
        dark = robot.camera.capture_single_image().raw_image

    def mean(image):
        grey = image.convert("L")
        return sum(grey.getdata()) / (grey.width * grey.height)

    assert mean(dark) < mean(bright) * 0.5
    assert virtual_vector.frames[2]["brightness"] == 0.3


def test_images_folder_is_served_in_a_loop_at_camera_size(vector_home, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (320, 180), (10, 200, 10)).save(folder / "a.png")
    Image.new("RGB", (320, 180), (200, 10, 10)).save(folder / "b.png")
    with VirtualVector("00000003", home=vector_home, images=folder) as vector:
        with anki_vector.Robot(serial="00000003", default_logging=False) as robot:
            images = [robot.camera.capture_single_image().raw_image for _ in range(3)]
    assert all(image.size == (640, 360) for image in images)
    greens = [image.getpixel((320, 180))[1] > 150 for image in images]
    assert greens == [True, False, True]
    assert vector.frames[3]["source"] == "a.png"


def test_drop_connections_cuts_the_sdk_and_comes_back(virtual_vector):
    robot = anki_vector.Robot(serial="00000001", default_logging=False)
    robot.connect()
    try:
        virtual_vector.drop_connections(down_for=1.0)
        assert not virtual_vector.is_up
        with pytest.raises(VectorException):
            robot.camera.capture_single_image()
    finally:
        try:
            robot.disconnect()
        except VectorException:
            robot.conn.close()
    deadline = time.monotonic() + 10
    while not virtual_vector.is_up and time.monotonic() < deadline:
        time.sleep(0.05)
    with anki_vector.Robot(serial="00000001", default_logging=False) as robot:
        assert robot.camera.capture_single_image().raw_image.size == (640, 360)
    assert virtual_vector.counters["drops"] == 1
    assert virtual_vector.counters["connections"] == 2


def test_command_line_virtual_vector_with_control_api(vector_home, tmp_path):
    record = tmp_path / "record"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vectorsim",
            "--serial",
            "000000cc",
            "--home",
            str(vector_home),
            "--record",
            str(record),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("READY "), line
        ready = json.loads(line[len("READY ") :])
        control = ready["control_url"]

        def post(path, body):
            request = urllib.request.Request(control + path, data=json.dumps(body).encode(), method="POST")
            return json.load(urllib.request.urlopen(request, timeout=10))

        assert post("/scene", {"brightness": 0.5})["brightness"] == 0.5
        with anki_vector.Robot(serial="000000cc", default_logging=False) as robot:
            image = robot.camera.capture_single_image()
            robot.behavior.say_text("from a subprocess")
            robot.screen.set_screen_with_image_data(bytes(184 * 96 * 2), 0.5)
        state = json.load(urllib.request.urlopen(control + "/state", timeout=10))
        assert state["spoken"] == ["from a subprocess"]
        assert state["screens"] == 1 and state["captures"] == 1
        frame = json.load(urllib.request.urlopen(f"{control}/frames/{image.image_id}", timeout=10))
        assert isinstance(frame["boxes"], list)
        png = urllib.request.urlopen(control + "/screens/last.png", timeout=10).read()
        assert png.startswith(b"\x89PNG")
        assert (record / "spoken.txt").read_text() == "from a subprocess\n"
        assert len(list((record / "screens").glob("*.png"))) == 1
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode == 0
