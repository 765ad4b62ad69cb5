"""Writes the SDK's own configuration file (``~/.anki_vector/sdk_config.ini``) for a virtual Vector."""

import configparser
import fcntl
import os
from pathlib import Path


def sdk_config_dir(home: str | os.PathLike | None = None) -> Path:
    """The folder the SDK reads: ``<home>/.anki_vector`` (``home`` defaults to the user's home)."""
    return Path(home if home is not None else Path.home()) / ".anki_vector"


def write_sdk_section(
    *, home: str | os.PathLike | None, serial: str, name: str, ip: str, port: int, cert_pem: bytes, guid: str
) -> Path:
    """Write the robot's certificate and its section (cert, ip, port, name, guid) into the SDK config.

    Other robots' sections are kept; a lock file serialises writers (two virtual Vectors may start at once).
    Returns the path of the config file.
    """
    folder = sdk_config_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / f"{name}-{serial}.cert"
    cert_path.write_bytes(cert_pem)
    config_path = folder / "sdk_config.ini"
    with open(folder / ".sdk_config.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        parser = configparser.ConfigParser(strict=False)
        parser.read(config_path)
        # The SDK looks sections up by lower-cased serial.
        for section in [s for s in parser.sections() if s.lower() == serial.lower()]:
            parser.remove_section(section)
        parser[serial] = {"cert": str(cert_path), "ip": ip, "port": str(port), "name": name, "guid": guid}
        tmp = config_path.with_suffix(".ini.tmp")
        with open(tmp, "w") as handle:
            parser.write(handle)
        os.replace(tmp, config_path)
    return config_path
