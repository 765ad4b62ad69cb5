"""Telemetry benchmark: robots post batches of 500 records to POST /api/v1/telemetry for a bounded time against
gunicorn on 127.0.0.1 (the production shape of README "Production"), then monitoring aggregates what was accepted.

    .venv/bin/python bench/telemetry.py                      # 60 s, 50 robots, PostgreSQL + Redis when reachable
    .venv/bin/python bench/telemetry.py --duration 10 --sqlite

Prints records/s accepted and the aggregation time per 100,000 records. The load generator runs on the same
machine as the server, so on a small machine both compete for the same cores (say so when quoting numbers).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import free_port, fresh_postgres_database, reachable

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DB = "vm_bench_telemetry"


def _payloads(rng: random.Random, dataset: str, model_id: int, count: int, batch: int) -> list[bytes]:
    """Pre-encoded request bodies (so the client spends its CPU on sending), spread over the last day."""
    now = datetime.now(UTC)
    bodies = []
    for _ in range(count):
        records = []
        for _ in range(batch):
            n = rng.choice([0, 0, 1, 1, 1, 2])
            records.append(
                {
                    "captured_at": (now - timedelta(seconds=rng.uniform(0, 86_000))).isoformat(),
                    "latency_ms": round(rng.lognormvariate(3.7, 0.4), 2),
                    "detections": [
                        {
                            "label": "vector",
                            "confidence": round(rng.uniform(0.25, 0.99), 3),
                            "box": [
                                rng.randint(0, 500),
                                rng.randint(0, 250),
                                rng.randint(40, 200),
                                rng.randint(30, 150),
                            ],
                        }
                        for _ in range(n)
                    ],
                    "image_stats": {
                        "brightness": round(rng.uniform(0.3, 0.7), 3),
                        "contrast": round(rng.uniform(0.1, 0.3), 3),
                    },
                }
            )
        bodies.append(json.dumps({"dataset": dataset, "model_id": model_id, "records": records}).encode())
    return bodies


def _load(url: str, tokens: list[str], bodies: list[bytes], duration: float, threads: int) -> dict:
    import requests

    stats = {"accepted": 0, "requests": 0, "errors": 0, "statuses": {}}
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker(index: int):
        session = requests.Session()
        rng = random.Random(index)
        while time.monotonic() < deadline:
            token = tokens[rng.randrange(len(tokens))]
            try:
                response = session.post(
                    url,
                    data=bodies[rng.randrange(len(bodies))],
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    timeout=60,
                )
                status, accepted = response.status_code, (response.json().get("accepted", 0) if response.ok else 0)
            except Exception:  # noqa: BLE001 - count and go on: a benchmark reports failures, it does not stop
                status, accepted = "exception", 0
            with lock:
                stats["requests"] += 1
                stats["accepted"] += accepted
                stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
                if status != 202:
                    stats["errors"] += 1

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    stats["seconds"] = time.monotonic() - started
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--robots", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500, help="records per request (the API's maximum is 500)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--extra-records",
        type=int,
        default=0,
        help="bulk-insert this many more raw records before timing the aggregation (a bigger aggregation sample)",
    )
    args = parser.parse_args(argv)

    var_dir = Path(tempfile.mkdtemp(prefix="vm-bench-telemetry-"))
    env = dict(os.environ)
    env.update(
        VECTORMLOPS_VAR_DIR=str(var_dir),
        SECRET_KEY="bench-only-secret-long-enough-for-the-fifty-character-rule",
        DJANGO_SETTINGS_MODULE="vectormlops.settings",
        ROBOT_THROTTLE_RATE="1000000/min",  # measure ingestion, not the per-robot throttle
        LOG_LEVEL="WARNING",
    )
    from vectormlops.embedded_redis import redis_url_or_embedded

    if args.sqlite or not reachable("127.0.0.1", 5432):
        env.pop("DATABASE_URL", None)
        database = "SQLite (WAL)"
    else:
        env["DATABASE_URL"] = fresh_postgres_database(BENCH_DB)
        database = "PostgreSQL"
    with redis_url_or_embedded(var_dir / "valkey") as redis_url:
        env["REDIS_URL"] = redis_url
        os.environ.update(env)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
        )

        import django

        django.setup()
        from django.utils import timezone

        from apps.datasets.models import Dataset
        from apps.deployments.models import TelemetryRecord
        from apps.deployments.services import robot_register
        from apps.monitoring.models import HourlyMetric
        from apps.monitoring.services import telemetry_aggregate
        from apps.training.models import ModelVersion

        dataset = Dataset.objects.create(slug="bench", name="Bench", classes=["vector"])
        model = ModelVersion.objects.create(dataset=dataset, number=1, classes=["vector"], imgsz=320)
        tokens = [robot_register(serial=f"b{i:07d}")[1] for i in range(args.robots)]
        bodies = _payloads(random.Random(0), dataset.slug, model.id, 16, args.batch)

        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "vectormlops.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            cwd=BASE_DIR,
            env=env,
        )
        try:
            for _ in range(100):
                if reachable("127.0.0.1", port):
                    break
                time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/api/v1/telemetry"
            _load(url, tokens[:2], bodies[:2], 2.0, 2)  # warm-up: imports, connections
            warm = TelemetryRecord.objects.count()
            stats = _load(url, tokens, bodies, args.duration, args.threads)
        finally:
            server.terminate()
            server.wait(timeout=30)

        stored = TelemetryRecord.objects.count() - warm
        if args.extra_records:
            rows, rng = [], random.Random(1)
            robot_ids = list(TelemetryRecord.objects.values_list("robot_id", flat=True).distinct()[:50])
            now = timezone.now()
            for i in range(args.extra_records):
                rows.append(
                    TelemetryRecord(
                        robot_id=robot_ids[i % len(robot_ids)],
                        dataset=dataset,
                        model=model,
                        captured_at=now - timedelta(seconds=rng.uniform(0, 86_000)),
                        latency_ms=rng.lognormvariate(3.7, 0.4),
                        detection_count=1,
                        top_confidence=rng.uniform(0.25, 0.99),
                        detections=[],
                        brightness=0.5,
                        contrast=0.2,
                    )
                )
            TelemetryRecord.objects.bulk_create(rows, batch_size=2000)
        started = time.perf_counter()
        result = telemetry_aggregate(until=timezone.now() + timedelta(seconds=1))
        aggregate_s = time.perf_counter() - started
        fleet_frames = sum(HourlyMetric.objects.filter(robot__isnull=True).values_list("frames", flat=True))

    records_per_s = stats["accepted"] / stats["seconds"]
    print(f"database: {database}; gunicorn {args.workers} sync workers on 127.0.0.1; {args.threads} client threads")
    print(f"robots: {args.robots}; batch: {args.batch} records; duration: {stats['seconds']:.1f} s")
    print(f"requests: {stats['requests']} (statuses {stats['statuses']})")
    print(f"accepted: {stats['accepted']} records ({stored} stored) -> {records_per_s:,.0f} records/s")
    print(
        f"aggregation: {result['records']} records into {result['buckets']} bucket writes in {aggregate_s:.2f} s "
        f"-> {aggregate_s / max(1, result['records']) * 100_000:.2f} s per 100,000 records"
    )
    print(f"check: fleet buckets hold {fleet_frames} frames for {TelemetryRecord.objects.count()} raw records")
    return 0 if stats["accepted"] and fleet_frames == TelemetryRecord.objects.count() else 1


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    sys.exit(main())
