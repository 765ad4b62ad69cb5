"""Upload N generated 640x360 JPEGs (Vector's camera size) over HTTP with K concurrent clients, beside a bare loop
over the same images in this process, one core (verify, full decode, sha256, grey thumbnail, write both files):
prints both rates, their ratio (HTTP / bare), p50/p95 latency, nproc and the load average.

    python bench/ingest.py -n 400 -k 4                        # starts its own server (SQLite, gunicorn 2 workers)
    python bench/ingest.py --url http://host:8000 --token KEY --dataset vector -n 2000 -k 8   # KEY: a robot's token
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


# The uploads come from a robot, as a collecting fleet's do (Bearer token); the person's key checks the server is up.
SETUP = """
from django.contrib.auth.models import Group, User
from apps.datasets.models import Dataset
from apps.datasets.services import dataset_create
from apps.deployments.services import robot_register
from vectormlops.services import api_token_create
user, _ = User.objects.get_or_create(username="bench")
user.groups.add(Group.objects.get_or_create(name="ml_engineer")[0])
if not Dataset.objects.filter(slug="bench").exists():
    dataset_create(slug="bench", name="Benchmark", classes=["vector"])
print(api_token_create(user=user, expires_in=None)[1], robot_register(serial="00bench1", name="bench")[1])
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
            "ROBOT_THROTTLE_RATE": "100000/min",  # one robot stands for a fleet: measure ingestion, not the throttle
        }
        env.pop("DATABASE_URL", None)  # a fresh SQLite database in the temp var dir
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        person_key, robot_token = (
            subprocess.run(
                [PY, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
            .split()
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
                    if httpx.get(
                        f"{base}/api/v1/datasets", headers={"Authorization": f"Token {person_key}"}
                    ).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.3)
            yield base, robot_token, env
        finally:
            server.terminate()
            server.wait(timeout=30)


def generate(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [scene_jpeg(rng, 640, 360)[0] for _ in range(n)]


def bare_loop(images: list[bytes]) -> dict:
    """The least a stored, verified image costs, in this process on one core: verify, full decode, sha256, a grey
    256 px thumbnail, both files written and flushed."""
    import hashlib
    import io

    from PIL import Image as PILImage

    with tempfile.TemporaryDirectory(prefix="vm-bare-") as folder:
        started = time.perf_counter()
        for index, data in enumerate(images):
            digest = hashlib.sha256(data).hexdigest()
            PILImage.open(io.BytesIO(data)).verify()
            image = PILImage.open(io.BytesIO(data))
            image.load()
            thumb = image.convert("L")
            thumb.thumbnail((256, 256))
            buffer = io.BytesIO()
            thumb.save(buffer, format="JPEG", quality=80)
            for name, payload in ((f"{index}-{digest}.jpg", data), (f"{index}-t.jpg", buffer.getvalue())):
                with open(os.path.join(folder, name), "wb") as handle:
                    handle.write(payload)
        wall = time.perf_counter() - started
    return {"images": len(images), "seconds": round(wall, 2), "images_per_s": round(len(images) / wall, 1)}


def run(url: str, token: str, dataset: str, images: list[bytes], clients: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    queue = list(enumerate(images))

    def worker():
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
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
    parser.add_argument("--token", help="a robot's Bearer token (with --url)")
    parser.add_argument("--dataset", default="bench", help="dataset slug (with --url it must exist)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the self-started server")
    parser.add_argument("--seed", type=int, default=None, help="image seed (default: random, so no duplicates)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    started = time.perf_counter()
    images = generate(args.n, seed)
    print(f"generated {len(images)} JPEGs 640x360 in {time.perf_counter() - started:.1f}s", flush=True)
    load_before = os.getloadavg()
    bare = bare_loop(images)
    print(f"bare loop (1 core, in process): {bare['images_per_s']} images/s ({bare['seconds']} s)", flush=True)
    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        result = run(args.url, args.token, args.dataset, images, args.k)
    else:
        with bench_server(workers=args.workers) as (url, token, _env):
            result = run(url, token, "bench", images, args.k)
            result["server"] = f"gunicorn {args.workers} sync workers, SQLite, self-started; uploads as a robot"
    result["bare_images_per_s"] = bare["images_per_s"]
    result["ratio_http_to_bare"] = round(result["images_per_s"] / bare["images_per_s"], 3)
    result["nproc"] = os.cpu_count()
    result["loadavg_before"] = " ".join(f"{v:.2f}" for v in load_before)
    result["loadavg_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0 if set(result["statuses"]) <= {200, 201} else 1


if __name__ == "__main__":
    sys.exit(main())
