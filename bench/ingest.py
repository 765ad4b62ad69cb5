"""Upload N generated 640x360 JPEGs (Vector's camera size) over HTTP with K concurrent clients; print images/s and
p50/p95 latency.

    python bench/ingest.py -n 2000 -k 4                       # starts its own server (SQLite, gunicorn 2 workers)
    python bench/ingest.py --url http://host:8000 --token KEY --dataset vector -n 2000 -k 8
"""

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vectorsim.scenes import scene_jpeg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


SETUP = """
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from apps.datasets.models import Dataset
from apps.datasets.services import dataset_create
user, _ = User.objects.get_or_create(username="bench")
user.groups.add(Group.objects.get_or_create(name="ml_engineer")[0])
token, _ = Token.objects.get_or_create(user=user)
if not Dataset.objects.filter(slug="bench").exists():
    dataset_create(slug="bench", name="Benchmark", classes=["vector"])
print(token.key)
"""


@contextlib.contextmanager
def bench_server(workers: int = 2):
    """Yield (base_url, token, env) for a fresh server; everything is removed afterwards."""
    from vectormlops.embedded_redis import redis_url_or_embedded

    with tempfile.TemporaryDirectory(prefix="vm-bench-") as var, redis_url_or_embedded() as redis_url:
        env = {
            **os.environ,
            "VECTORMLOPS_VAR_DIR": var,
            "REDIS_URL": redis_url,
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-long-enough-for-the-fifty-character-rule"),
            "DEBUG": "0",
            "CACHE_KEY_PREFIX": f"vm-bench-{os.getpid()}",
        }
        env.pop("DATABASE_URL", None)  # a fresh SQLite database in the temp var dir
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        token = (
            subprocess.run(
                [PY, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(PY).parent / "gunicorn"),
                "vectormlops.wsgi:application",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(workers),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/api/v1/datasets", headers={"Authorization": f"Token {token}"}).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.3)
            yield base, token, env
        finally:
            server.terminate()
            server.wait(timeout=30)


def generate(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [scene_jpeg(rng, 640, 360)[0] for _ in range(n)]


def run(url: str, token: str, dataset: str, images: list[bytes], clients: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    queue = list(enumerate(images))

    def worker():
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=60) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    index, data = queue.pop()
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/images",
                    data={"dataset": dataset, "source": "camera"},
                    files={"file": (f"{index}.jpg", data, "image/jpeg")},
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "images": len(images),
        "clients": clients,
        "seconds": round(wall, 2),
        "images_per_s": round(len(images) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
        "statuses": statuses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="images to upload")
    parser.add_argument("-k", type=int, default=4, help="concurrent clients")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--token", help="API token of an annotator or higher (with --url)")
    parser.add_argument("--dataset", default="bench", help="dataset slug (with --url it must exist)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the self-started server")
    parser.add_argument("--seed", type=int, default=None, help="image seed (default: random, so no duplicates)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    started = time.perf_counter()
    images = generate(args.n, seed)
    print(f"generated {len(images)} JPEGs 640x360 in {time.perf_counter() - started:.1f}s", flush=True)
    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        result = run(args.url, args.token, args.dataset, images, args.k)
    else:
        with bench_server(workers=args.workers) as (url, token, _env):
            result = run(url, token, "bench", images, args.k)
            result["server"] = f"gunicorn {args.workers} sync workers, SQLite, self-started"
    result["nproc"] = os.cpu_count()
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0 if set(result["statuses"]) <= {200, 201} else 1


if __name__ == "__main__":
    sys.exit(main())
