"""The virtual Vector: a TLS gRPC server speaking the SDK's own ``ExternalInterface`` protocol.

The real ``anki_vector.Robot(serial=...)`` connects to it unchanged: it writes the SDK configuration section
(certificate, ip, port, name, guid) the SDK reads from ``<home>/.anki_vector/sdk_config.ini``.

RPCs with behaviour: ProtocolVersion, BehaviorControl (grants control), SDKInitialization, EventStream
(camera settings and robot_state with a pose, ten times a second), GetCameraConfig, CaptureSingleImage
(640x360 JPEG from a folder in a loop, or a generated scene), SetHeadAngle, DisplayFaceImageRGB (recorded),
SayText (recorded). Every other RPC of the service answers an empty, successful response, so whatever the SDK
calls on connect or disconnect (vision toggles, deleting custom objects, releasing control) never fails.
"""

import io
import logging
import math
import random
import secrets
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from anki_vector.messaging import external_interface_pb2, external_interface_pb2_grpc, protocol
from google.protobuf import message_factory
from PIL import Image

from vectorsim.certs import make_certificate
from vectorsim.scenes import render_scene
from vectorsim.sdkconfig import write_sdk_section

logger = logging.getLogger("vectorsim")

CAMERA_WIDTH, CAMERA_HEIGHT = 640, 360
SCREEN_WIDTH, SCREEN_HEIGHT = 184, 96
MIN_HEAD_ANGLE_RAD, MAX_HEAD_ANGLE_RAD = math.radians(-22.0), math.radians(45.0)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_KEEP = 500  # recorded screens/frames kept in memory


def rgb565_to_image(data: bytes, width: int = SCREEN_WIDTH, height: int = SCREEN_HEIGHT) -> Image.Image:
    """Decode the screen's big-endian RGB565 bytes (what ``set_screen_with_image_data`` sends) to an RGB image."""
    pixels = bytearray()
    for i in range(0, min(len(data), width * height * 2), 2):
        value = (data[i] << 8) | data[i + 1]
        r, g, b = (value >> 11) & 0x1F, (value >> 5) & 0x3F, value & 0x1F
        pixels += bytes(((r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)))
    pixels += bytes(width * height * 3 - len(pixels))
    return Image.frombytes("RGB", (width, height), bytes(pixels))


def _dim(image: Image.Image, brightness: float) -> Image.Image:
    if brightness == 1.0:
        return image
    return image.point(lambda v: max(0, min(255, int(v * brightness))))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def generated_frame(
    seed: int, image_id: int, *, brightness: float = 1.0, robots: int | None = None
) -> tuple[bytes, list[list[float]]]:
    """The camera frame ``image_id`` of a virtual Vector with ``seed`` (JPEG bytes, true boxes): deterministic, so
    a test can tell which boxes belong to an image a robot uploaded."""
    image, boxes = render_scene(random.Random(seed * 1_000_003 + image_id), CAMERA_WIDTH, CAMERA_HEIGHT, robots=robots)
    return _jpeg(_dim(image, brightness)), boxes


def _default_response(message_class):
    """An empty response that the SDK reads as success (status received, action succeeded)."""
    message = message_class()
    fields = message.DESCRIPTOR.fields_by_name
    if "status" in fields and fields["status"].message_type is not None:
        message.status.code = protocol.ResponseStatus.RESPONSE_RECEIVED
    if "result" in fields and fields["result"].message_type is not None and hasattr(message.result, "code"):
        message.result.code = protocol.ActionResult.ACTION_RESULT_SUCCESS
    return message


def _ok(message_class, **kwargs):
    message = _default_response(message_class)
    for key, value in kwargs.items():
        setattr(message, key, value)
    return message


@dataclass
class Screen:
    """One image shown on the face screen."""

    image: Image.Image
    duration_ms: int
    at: float = field(default_factory=time.time)


class _AuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls whose ``authorization`` metadata is not ``Bearer <guid>`` (the SDK's access token)."""

    def __init__(self, guid: str):
        self._expected = f"Bearer {guid}"

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong or missing guid")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") != self._expected:
            return self._deny
        return continuation(handler_call_details)


class _Servicer(external_interface_pb2_grpc.ExternalInterfaceServicer):
    """The RPCs with behaviour; ``_fill_defaults`` answers all the others."""

    def __init__(self, vector: "VirtualVector", stopped: threading.Event):
        self.vector = vector
        self.stopped = stopped
        self._fill_defaults()

    def _fill_defaults(self) -> None:
        service = external_interface_pb2.DESCRIPTOR.services_by_name["ExternalInterface"]
        for method in service.methods:
            if method.name in type(self).__dict__:
                continue
            output = message_factory.GetMessageClass(method.output_type)
            setattr(self, method.name, self._make_default(method, output))

    def _make_default(self, method, output):
        name = method.name
        if method.client_streaming and method.server_streaming:

            def bidi(request_iterator, context):
                for _ in request_iterator:
                    pass
                yield _default_response(output)

            return bidi
        if method.server_streaming:

            def stream(request, context):
                # Feeds we don't simulate (audio, nav map, camera feed): an empty stream.
                logger.debug("vectorsim: empty stream for %s", name)
                return iter(())

            return stream

        def unary(request, context):
            logger.debug("vectorsim: default answer for %s", name)
            return _default_response(output)

        return unary

    # --- connection ---------------------------------------------------------------------------------------------
    def ProtocolVersion(self, request, context):
        return protocol.ProtocolVersionResponse(
            result=protocol.ProtocolVersionResponse.SUCCESS, host_version=protocol.PROTOCOL_VERSION_CURRENT
        )

    def SDKInitialization(self, request, context):
        self.vector._count("connections")
        return _default_response(protocol.SDKInitializationResponse)

    def BehaviorControl(self, request_iterator, context):
        for request in request_iterator:
            kind = request.WhichOneof("request_type")
            if kind == "control_request":
                yield protocol.BehaviorControlResponse(control_granted_response=protocol.ControlGrantedResponse())
            if self.stopped.is_set():
                return

    def EventStream(self, request, context):
        while context.is_active() and not self.stopped.is_set():
            # Camera settings first, then the state: a client that saw a state has seen the settings too.
            gain, exposure = self.vector.camera_settings()
            settings = protocol.CameraSettingsUpdate(gain=gain, exposure_ms=exposure, auto_exposure_enabled=True)
            yield protocol.EventResponse(event=protocol.Event(camera_settings_update=settings))
            yield protocol.EventResponse(event=protocol.Event(robot_state=self.vector.robot_state()))
            self.stopped.wait(0.1)

    def GetCameraConfig(self, request, context):
        return protocol.CameraConfigResponse(
            focal_length_x=290.0,
            focal_length_y=290.0,
            center_x=CAMERA_WIDTH / 2,
            center_y=CAMERA_HEIGHT / 2,
            fov_x=math.radians(90.0),
            fov_y=math.radians(50.0),
            min_camera_exposure_time_ms=1,
            max_camera_exposure_time_ms=67,
            min_camera_gain=0.1,
            max_camera_gain=3.99,
        )

    # --- camera, head, screen, voice --------------------------------------------------------------------------
    def CaptureSingleImage(self, request, context):
        image_id, data = self.vector._next_frame()
        return _ok(
            protocol.CaptureSingleImageResponse,
            frame_time_stamp=int(time.monotonic() * 1000) & 0xFFFFFFFF,
            image_id=image_id,
            image_encoding=protocol.ImageChunk.JPEG_COLOR,
            data=data,
        )

    def SetHeadAngle(self, request, context):
        self.vector.head_angle_rad = min(MAX_HEAD_ANGLE_RAD, max(MIN_HEAD_ANGLE_RAD, request.angle_rad))
        return _default_response(protocol.SetHeadAngleResponse)

    def DisplayFaceImageRGB(self, request, context):
        self.vector._record_screen(bytes(request.face_data), request.duration_ms)
        return _default_response(protocol.DisplayFaceImageRGBResponse)

    def SayText(self, request, context):
        self.vector._record_speech(request.text)
        return _ok(protocol.SayTextResponse, state=protocol.SayTextResponse.FINISHED)


class VirtualVector:
    """A virtual Vector for tests and demos.

    ``VirtualVector("00000001", images=None, home=tmp).start()``; then ``anki_vector.Robot(serial="00000001")``
    connects to it when ``HOME`` is ``tmp``. Recorded: ``spoken`` (texts), ``screens`` (``Screen`` with a PIL image),
    ``frames`` (image id → true boxes of generated scenes). Controls: ``set_scene(brightness=..., robots=...)``,
    ``drop_connections(down_for=...)``.
    """

    def __init__(
        self,
        serial: str,
        *,
        images: str | Path | None = None,
        home: str | Path | None = None,
        port: int = 0,
        name: str | None = None,
        host: str = "127.0.0.1",
        guid: str | None = None,
        record_dir: str | Path | None = None,
        seed: int = 0,
    ):
        self.serial = serial
        self.name = name or f"Vector-{serial[-4:].upper()}"
        self.home = Path(home) if home is not None else None
        self.host = host
        self.port = port
        self.guid = guid or secrets.token_urlsafe(16)
        self.record_dir = Path(record_dir) if record_dir else None
        self.seed = seed
        self.images = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if images else []
        if images and not self.images:
            raise ValueError(f"no .jpg/.jpeg/.png images in {images}")
        self.head_angle_rad = 0.0
        self.brightness = 1.0
        self.robots: int | None = None
        self.spoken: list[str] = []
        self.screens: list[Screen] = []
        self.frames: dict[int, dict] = {}
        self.counters = {"connections": 0, "captures": 0, "drops": 0}
        self.config_path: Path | None = None
        self._lock = threading.Lock()
        self._image_id = 0
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        self._key_pem, self._cert_pem = make_certificate(self.name)
        self._restart_timer: threading.Timer | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> "VirtualVector":
        """Start serving and write the SDK configuration; returns self."""
        self._serve()
        self.config_path = write_sdk_section(
            home=self.home,
            serial=self.serial,
            name=self.name,
            ip=self.host,
            port=self.port,
            cert_pem=self._cert_pem,
            guid=self.guid,
        )
        logger.info("virtual %s (serial %s) listening on %s:%s", self.name, self.serial, self.host, self.port)
        return self

    def _serve(self) -> None:
        stopped = threading.Event()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=24, thread_name_prefix=f"vectorsim-{self.serial}"),
            interceptors=[_AuthInterceptor(self.guid)],
        )
        external_interface_pb2_grpc.add_ExternalInterfaceServicer_to_server(_Servicer(self, stopped), server)
        credentials = grpc.ssl_server_credentials([(self._key_pem, self._cert_pem)])
        bound = server.add_secure_port(f"{self.host}:{self.port}", credentials)
        if not bound:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.port = bound
        server.start()
        with self._lock:
            self._server, self._stopped = server, stopped

    def _halt(self) -> None:
        with self._lock:
            server, stopped, self._server = self._server, self._stopped, None
        if server is not None:
            stopped.set()
            server.stop(grace=None).wait(5)

    def stop(self) -> None:
        """Stop serving (connected SDK clients see their streams end)."""
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        self._halt()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def drop_connections(self, down_for: float = 1.0) -> None:
        """Cut every connection, stay unreachable for ``down_for`` seconds, then listen again on the same port."""
        self._count("drops")
        self._halt()
        if down_for <= 0:
            self._serve()
            return
        self._restart_timer = threading.Timer(down_for, self._serve)
        self._restart_timer.daemon = True
        self._restart_timer.start()

    def __enter__(self) -> "VirtualVector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- scene --------------------------------------------------------------------------------------------------
    def set_scene(self, *, brightness: float | None = None, robots: int | None | str = "keep") -> None:
        """Change what the camera sees: ``brightness`` (1.0 normal, < 1 darker), ``robots`` per generated frame."""
        if brightness is not None:
            self.brightness = float(brightness)
        if robots != "keep":
            self.robots = robots

    def camera_settings(self) -> tuple[float, int]:
        """Auto exposure as a real camera would answer a darker room: longer exposure, more gain."""
        dim = 1.0 / max(0.05, self.brightness)
        return min(3.99, round(1.0 * dim, 2)), int(min(67, 16 * dim))

    def robot_state(self):
        return protocol.RobotState(
            pose=protocol.PoseStruct(x=0.0, y=0.0, z=0.0, q0=1.0, q1=0.0, q2=0.0, q3=0.0, origin_id=1),
            pose_angle_rad=0.0,
            head_angle_rad=self.head_angle_rad,
            lift_height_mm=32.0,
            last_image_time_stamp=self._image_id,
        )

    def _next_frame(self) -> tuple[int, bytes]:
        with self._lock:
            self._image_id += 1
            image_id = self._image_id
            self.counters["captures"] += 1
        boxes = None
        if self.images:
            path = self.images[(image_id - 1) % len(self.images)]
            image = Image.open(path)
            image.load()
            if image.size != (CAMERA_WIDTH, CAMERA_HEIGHT) or image.format != "JPEG" or self.brightness != 1.0:
                image = image.convert("RGB").resize((CAMERA_WIDTH, CAMERA_HEIGHT))
                data = None
            else:
                data = path.read_bytes()
            source = path.name
        else:
            data, boxes = generated_frame(self.seed, image_id, brightness=self.brightness, robots=self.robots)
            source = "generated"
        if data is None:
            data = _jpeg(_dim(image, self.brightness))
        with self._lock:
            self.frames[image_id] = {"boxes": boxes, "source": source, "brightness": self.brightness}
            for old in [k for k in self.frames if k <= image_id - _KEEP]:
                del self.frames[old]
        return image_id, data

    # --- recording ----------------------------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def _record_screen(self, data: bytes, duration_ms: int) -> None:
        screen = Screen(rgb565_to_image(data), duration_ms)
        with self._lock:
            self.screens.append(screen)
            del self.screens[:-_KEEP]
            index = len(self.screens)
        if self.record_dir:
            folder = self.record_dir / "screens"
            folder.mkdir(parents=True, exist_ok=True)
            screen.image.save(folder / f"{int(screen.at * 1000)}-{index:05d}.png")

    def _record_speech(self, text: str) -> None:
        with self._lock:
            self.spoken.append(text)
        if self.record_dir:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            with open(self.record_dir / "spoken.txt", "a") as handle:
                handle.write(text + "\n")

    def state(self) -> dict:
        """A JSON-able summary (what the control API's ``GET /state`` returns)."""
        with self._lock:
            return {
                "serial": self.serial,
                "name": self.name,
                "host": self.host,
                "port": self.port,
                "up": self._server is not None,
                "head_angle_rad": self.head_angle_rad,
                "brightness": self.brightness,
                "spoken": list(self.spoken),
                "screens": len(self.screens),
                **self.counters,
            }
