"""``python -m agent {enroll,collect,run,feedback}`` (also installed as ``vector-agent`` when packaged)."""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from agent.api import ApiClient, ApiError, RequestRejected, ServerUnavailable, TokenRevoked
from agent.config import ConfigError, RobotConfig, config_path, data_dir, load_robot, save_robot
from agent.loops import EXIT_REVOKED, REVOKED_MESSAGE, Agent, RunOptions, collect, feedback
from agent.spool import Spool
from agent.vector import RobotNotConfigured, VectorLink

logger = logging.getLogger("agent")


def _band(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        band = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError("expected LOW-HIGH, e.g. 0.25-0.6") from None
    if not 0 <= band[0] < band[1] <= 1:
        raise argparse.ArgumentTypeError("expected 0 <= LOW < HIGH <= 1")
    return band


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of milliseconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("expected more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="VectorMLOps agent for an Anki Vector.")
    parser.add_argument("--config", type=Path, help=f"config file (default {config_path()})")
    parser.add_argument("--data-dir", type=Path, help="models, disk queue, last frame (default per user, per serial)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    enroll = sub.add_parser("enroll", help="register this robot with the server and store its token")
    enroll.add_argument("--server", required=True, help="server URL, e.g. http://192.168.1.10:8000")
    enroll.add_argument("--key", required=True, help="the enrolment key (ROBOT_ENROLLMENT_KEY on the server)")
    enroll.add_argument("--serial", required=True, help="Vector's serial number (as in sdk_config.ini)")
    enroll.add_argument("--name", default="", help="Vector's name, e.g. Vector-A1B2")

    def robot_args(p):
        p.add_argument("--serial", help="which enrolled robot (default: the last enrolled)")

    col = sub.add_parser("collect", help="capture camera frames and upload them to a dataset")
    robot_args(col)
    col.add_argument("--dataset", required=True)
    col.add_argument("--every", type=float, default=5.0, help="seconds between frames (default 5)")
    col.add_argument("--count", type=int, help="stop after N frames (default: until Ctrl-C)")
    col.add_argument("--head-angle", type=float, default=0.0, help="head angle in degrees, -22..45 (default 0)")

    run = sub.add_parser("run", help="the production loop: poll models, detect, report")
    robot_args(run)
    run.add_argument("--dataset", required=True)
    run.add_argument("--interval", type=float, default=0.5, help="seconds between frames (default 0.5)")
    run.add_argument("--band", type=_band, default=(0.25, 0.6), help="uncertainty band LOW-HIGH (default 0.25-0.6)")
    run.add_argument("--max-uploads-per-hour", type=int, default=20, help="uncertain frames uploaded per hour")
    run.add_argument("--telemetry-every", type=float, default=10.0, help="seconds between telemetry batches")
    run.add_argument("--say-every", type=float, default=30.0, help="at most one 'I see a Vector' per N seconds")
    run.add_argument("--head-angle", type=float, default=0.0, help="head angle in degrees (default 0)")
    run.add_argument("--no-screen", action="store_true", help="don't draw the boxes on the face screen")
    run.add_argument("--max-frames", type=int, help="stop after N frames")
    run.add_argument("--spool-max-items", type=int, default=2000, help="disk queue bound (oldest dropped first)")
    run.add_argument(
        "--shadow-budget-ms",
        type=_positive,
        help="latency budget of a shadow model per frame; frames over it are skipped (default 1.5x the live model)",
    )

    fb = sub.add_parser("feedback", help="upload the last (or a given) frame as feedback")
    robot_args(fb)
    fb.add_argument("--reason", required=True, choices=["missed", "false_positive", "wrong_box"])
    fb.add_argument("--image", type=Path, help="an image file instead of the last frame")
    fb.add_argument("--dataset", help="dataset (default: the one of the last frame)")
    return parser


def _install_signal_handlers(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("httpx", "connection.Connection", "robot.Robot", "events.EventHandler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if args.command == "enroll":
        client = ApiClient(args.server)
        try:
            answer = client.enroll(enrollment_key=args.key, serial=args.serial, name=args.name)
        except RequestRejected as exc:
            print(f"enrolment refused: {exc}", file=sys.stderr)
            return 1
        except ServerUnavailable as exc:
            print(f"server unavailable: {exc}", file=sys.stderr)
            return 1
        path = save_robot(RobotConfig(args.server, answer["serial"], answer["token"], args.name), args.config)
        print(f"enrolled {answer['serial']}; token stored in {path}")
        return 0

    try:
        robot = load_robot(args.serial, args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    folder = data_dir(robot.serial, args.data_dir)
    client = ApiClient(robot.server, robot.token)
    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        if args.command == "collect":
            link = VectorLink(robot.serial, stop=stop)
            spool = Spool(folder / "spool")
            n = collect(
                client, link, spool, dataset=args.dataset, every_s=args.every, count=args.count,
                head_angle_deg=args.head_angle, stop=stop,
            )  # fmt: skip
            left = len(spool)
            print(f"captured {n} frame(s)" + (f"; {left} upload(s) queued for later" if left else ""))
            return 0
        if args.command == "feedback":
            result = feedback(
                client, Spool(folder / "spool"), folder, reason=args.reason, image=args.image, dataset=args.dataset
            )
            print(f"feedback uploaded: image {result['id']}" if result else "server unavailable: feedback queued")
            return 0
        options = RunOptions(
            dataset=args.dataset,
            frame_interval_s=args.interval,
            band=args.band,
            max_uploads_per_hour=args.max_uploads_per_hour,
            telemetry_interval_s=args.telemetry_every,
            say_interval_s=args.say_every,
            head_angle_deg=args.head_angle,
            screen=not args.no_screen,
            max_frames=args.max_frames,
            shadow_budget_ms=args.shadow_budget_ms,
        )
        agent = Agent(client, folder, options, link=VectorLink(robot.serial), spool_max_items=args.spool_max_items)
        agent.stop = stop
        return agent.run()
    except TokenRevoked:
        print(REVOKED_MESSAGE, file=sys.stderr)
        return EXIT_REVOKED
    except (ApiError, FileNotFoundError, ValueError, RobotNotConfigured) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
