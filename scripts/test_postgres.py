"""Run pytest against PostgreSQL and Redis on this machine (TEST_DATABASE_URL / TEST_REDIS_URL override).

When either is unreachable this run is skipped with a message, except under CI=true where it fails."""

import os
import socket
import subprocess
import sys
from urllib.parse import urlparse

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vectormlops")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    missing = [
        name
        for name, url, port in (("PostgreSQL", DATABASE_URL, 5432), ("Redis", REDIS_URL, 6379))
        if not reachable(url, port)
    ]
    if missing:
        message = f"{' and '.join(missing)} not reachable ({DATABASE_URL}, {REDIS_URL})"
        if os.environ.get("CI", "").lower() == "true":
            print(f"FAIL: {message}; CI needs both.", file=sys.stderr)
            return 1
        print(f"SKIPPED the PostgreSQL run: {message}.")
        return 0
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL}
    return subprocess.call([os.path.join(os.path.dirname(sys.executable), "pytest"), *sys.argv[1:]], env=env)


if __name__ == "__main__":
    sys.exit(main())
