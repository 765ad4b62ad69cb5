"""The agent's configuration file and data folder.

Config (server URL, serial, token per robot): ``$VECTOR_AGENT_CONFIG``, else
``$XDG_CONFIG_HOME/vector-agent/config.json``, else ``~/.config/vector-agent/config.json``; written with mode 0600
because it holds robot tokens. Data (models, disk queue, last frame): ``$VECTOR_AGENT_DATA``, else
``$XDG_STATE_HOME/vector-agent``, else ``~/.local/state/vector-agent``; one sub-folder per serial.
"""

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


class ConfigError(Exception):
    """The configuration is missing or does not name the robot asked for."""


@dataclass
class RobotConfig:
    """What the agent needs to talk to the server as one robot."""

    server: str
    serial: str
    token: str
    name: str = ""


def config_path() -> Path:
    if os.environ.get("VECTOR_AGENT_CONFIG"):
        return Path(os.environ["VECTOR_AGENT_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vector-agent" / "config.json"


def data_dir(serial: str, base: str | os.PathLike | None = None) -> Path:
    if base is None:
        base = os.environ.get("VECTOR_AGENT_DATA")
    if base is None:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        base = Path(state) / "vector-agent"
    path = Path(base) / serial
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"robots": {}}


def save_robot(robot: RobotConfig, path: Path | None = None) -> Path:
    """Store (or replace) one robot's entry and make it the default; the file is created with mode 0600."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = _read(path)
    data.setdefault("robots", {})[robot.serial] = asdict(robot)
    data["default"] = robot.serial
    # Written to a 0600 temp file then renamed: the token is never readable by others, even for a moment.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_robot(serial: str | None = None, path: Path | None = None) -> RobotConfig:
    """The entry for ``serial`` (default: the last enrolled robot)."""
    path = path or config_path()
    data = _read(path)
    robots = data.get("robots", {})
    serial = serial or data.get("default")
    if not serial or serial not in robots:
        known = ", ".join(sorted(robots)) or "none"
        raise ConfigError(f"robot {serial or '(default)'} is not enrolled in {path} (enrolled: {known}); run enroll")
    return RobotConfig(**robots[serial])
