"""The link to the robot through the SDK, with reconnection.

Every SDK call goes through ``VectorLink``: a failed call (connection lost, robot gone) disconnects, and the next
``ensure_connected`` reconnects with exponential backoff and jitter, so the agent rides out Wi-Fi drops and robot
restarts.
"""

import logging
import math
import random
import threading
import time
from dataclasses import dataclass

from PIL import Image

logger = logging.getLogger("agent.vector")


class RobotLost(Exception):
    """The SDK connection failed; the link will reconnect on the next ``ensure_connected``."""


class RobotNotConfigured(Exception):
    """The SDK has no usable configuration for this serial: retrying cannot help."""


@dataclass
class Frame:
    """One camera frame with what the SDK reported alongside it."""

    image: Image.Image
    image_id: int
    captured_at: float
    head_angle_deg: float | None = None
    exposure_ms: int | None = None
    gain: float | None = None

    def meta(self) -> dict:
        meta = {"image_id": self.image_id, "head_angle_deg": self.head_angle_deg}
        if self.exposure_ms:
            meta["exposure_ms"] = self.exposure_ms
        if self.gain:
            meta["gain"] = self.gain
        return {k: v for k, v in meta.items() if v is not None}


class VectorLink:
    """One robot, connected on demand. ``robot_factory`` makes the ``anki_vector.Robot`` (tests may swap it)."""

    def __init__(
        self,
        serial: str,
        *,
        robot_factory=None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 10.0,
        stop: threading.Event | None = None,
    ):
        self.serial = serial
        self.robot = None
        self.connects = 0
        self.failures = 0
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.connect_timeout = connect_timeout
        self.stop = stop or threading.Event()
        self._robot_factory = robot_factory or self._default_factory
        self._attempt = 0
        self.head_angle_deg: float | None = None  # re-applied after a reconnect

    def _default_factory(self):
        import anki_vector

        return anki_vector.Robot(serial=self.serial, cache_animation_lists=False, default_logging=False)

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter in its upper half."""
        base = min(self.backoff_max, self.backoff_initial * math.pow(2, attempt))
        return base * random.uniform(0.5, 1.0)

    def ensure_connected(self) -> bool:
        """Connect if needed, retrying with backoff until connected or ``stop`` is set; True when connected."""
        while self.robot is None and not self.stop.is_set():
            robot = None
            try:
                robot = self._robot_factory()
                robot.connect(timeout=self.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - the SDK raises many types; most mean "not now"
                if type(exc).__name__ == "VectorConfigurationException":
                    raise RobotNotConfigured(
                        f"the SDK has no configuration for Vector {self.serial} in ~/.anki_vector/sdk_config.ini "
                        f"(run `python -m anki_vector.configure`): {exc}"
                    ) from exc
                self.failures += 1
                delay = self.backoff_delay(self._attempt)
                self._attempt += 1
                logger.warning("cannot connect to Vector %s (%s); retrying in %.1fs", self.serial, exc, delay)
                if robot is not None:
                    self._close(robot)
                self.stop.wait(delay)
                continue
            self.robot, self._attempt = robot, 0
            self.connects += 1
            logger.info("connected to Vector %s", self.serial)
            if self.head_angle_deg is not None:
                try:
                    self.set_head_angle(self.head_angle_deg)
                except RobotLost:
                    continue
        return self.robot is not None

    def _close(self, robot) -> None:
        # disconnect() makes RPCs; on a dead link they fail or hang, so it gets a thread and a time limit.
        def close():
            try:
                robot.disconnect()
            except Exception:  # noqa: BLE001
                try:
                    robot.conn.close()
                except Exception:  # noqa: BLE001
                    pass

        thread = threading.Thread(target=close, daemon=True)
        thread.start()
        thread.join(10)

    def disconnect(self) -> None:
        robot, self.robot = self.robot, None
        if robot is not None:
            self._close(robot)

    def _call(self, what: str, fn):
        if self.robot is None:
            raise RobotLost("not connected")
        try:
            return fn(self.robot)
        except Exception as exc:  # noqa: BLE001
            logger.warning("Vector %s: %s failed (%s); reconnecting", self.serial, what, exc)
            self.failures += 1
            self.disconnect()
            raise RobotLost(str(exc)) from exc

    # --- the robot's abilities the agent uses ------------------------------------------------------------------
    def capture(self) -> Frame:
        def capture(robot):
            image = robot.camera.capture_single_image()
            if image is None:  # the SDK logs and returns None when the robot sent no data
                raise RuntimeError("no image")
            try:
                head = round(math.degrees(robot.head_angle_rad), 2)
            except Exception:  # noqa: BLE001 - not known before the first robot_state event
                head = self.head_angle_deg
            return Frame(
                image=image.raw_image,
                image_id=int(image.image_id or 0),
                captured_at=time.time(),
                head_angle_deg=head,
                exposure_ms=int(robot.camera.exposure_ms or 0) or None,
                gain=float(robot.camera.gain or 0) or None,
            )

        return self._call("capture", capture)

    def set_head_angle(self, degrees: float) -> None:
        from anki_vector.util import degrees as sdk_degrees

        self.head_angle_deg = degrees
        self._call("set head angle", lambda robot: robot.behavior.set_head_angle(sdk_degrees(degrees)))
        # The action is done; wait briefly for the state stream to report it, so frames carry the real angle.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                if abs(math.degrees(self.robot.head_angle_rad) - degrees) < 2.0:
                    break
            except Exception:  # noqa: BLE001 - no state yet, or the link just went away
                pass
            time.sleep(0.05)

    def show(self, screen_data: bytes, duration_s: float) -> None:
        self._call("show on screen", lambda robot: robot.screen.set_screen_with_image_data(screen_data, duration_s))

    def say(self, text: str) -> None:
        self._call("say", lambda robot: robot.behavior.say_text(text))
