"""Robot poll benchmark: 1,000 robots (1,000 distinct tokens) poll GET /api/v1/robot/model with If-None-Match
against gunicorn (WSGI, 2 sync workers, 127.0.0.1: the production shape of HTTP), compared with a trivial Django
view (GET /api/v1/robot/ping: no authentication, no database) on the same server.

    .venv/bin/python bench/poll.py                    # PostgreSQL when reachable (else SQLite) + a private Valkey
    .venv/bin/python bench/poll.py --sqlite --duration 10
    .venv/bin/python bench/poll.py --redis-url redis://127.0.0.1:6379/14   # a given Redis instead

Load generator: wrk (Debian package) with a Lua script that rotates through the 1,000 tokens and counts every
status that is not the expected one (304 for the poll, 200 for the baseline). Falls back to an httpx asyncio
client when wrk is missing. Prints req/s, p50/p99 latency for both and the ratio (target >= 70 %, zero errors);
the two are measured in alternating rounds so that the machine's changing load affects both alike.
wrk runs on the same cores as the server, so absolute numbers are lower than on a separate load machine.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port, fresh_postgres_database, reachable

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
BENCH_DB = "vm_bench_poll"
ROBOTS = 1000

WRK_SCRIPT = r"""
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local etag = os.getenv("BENCH_ETAG")
local expect = tonumber(os.getenv("BENCH_EXPECT"))
local path = os.getenv("BENCH_PATH")
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  i = id * 7919
end

function request()
  i = i + 1
  local token = tokens[(i % #tokens) + 1]
  local headers = {["Authorization"] = "Bearer " .. token}
  if etag ~= "" then headers["If-None-Match"] = etag end
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status ~= expect then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("UNEXPECTED_STATUS %d\n", total))
end
"""


def prepare(tokens_file: Path) -> None:
    """(Runs inside Django) a dataset, a model with artifacts in production, and 1,000 registered robots."""
    import hashlib

    import django

    django.setup()
    from django.core.cache import cache
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from apps.datasets.models import Dataset
    from apps.deployments import services
    from apps.training.models import ModelArtifact, ModelVersion

    cache.clear()
    dataset = Dataset.objects.create(slug="vector", name="Vector robots", classes=["vector"])
    model = ModelVersion.objects.create(dataset=dataset, number=1, classes=["vector"], imgsz=320, metrics={})
    for fmt in ("onnx", "pt"):
        content = os.urandom(64 * 1024)
        path = default_storage.save(f"bench/model.{fmt}", ContentFile(content))
        ModelArtifact.objects.create(
            model=model, format=fmt, storage_path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content)
        )
    services.model_promote(model=model, channel="production", reason="benchmark")
    tokens = [services.robot_register(serial=f"bench{i:05d}")[1] for i in range(ROBOTS)]
    tokens_file.write_text("\n".join(tokens) + "\n")
    from django.conf import settings

    tokens_file.with_suffix(".bound").write_text(str(settings.ROBOT_STATE_MAX_STALENESS_S))


def _wait_for(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server did not answer {url}")


def _parse_latency(text: str, label: str) -> float | None:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(base: str, path: str, *, tokens_file: Path, etag: str, expect: int, duration: int, connections: int):
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_TOKENS": str(tokens_file),
        "BENCH_ETAG": etag,
        "BENCH_EXPECT": str(expect),
        "BENCH_PATH": path,
    }
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), base]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = int(re.search(r"UNEXPECTED_STATUS (\d+)", out).group(1))
    socket_errors = re.search(r"Socket errors:.*", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests": total,
        "rps": rps,
        "p50_ms": _parse_latency(out, "50%"),
        "p99_ms": _parse_latency(out, "99%"),
        "unexpected_status": errors,
        "non_2xx_3xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",
    }


def run_httpx(base: str, path: str, *, tokens_file: Path, etag: str, expect: int, duration: int, connections: int):
    """Fallback load generator (asyncio + httpx) when wrk is not installed."""
    import asyncio

    import httpx

    tokens = tokens_file.read_text().split()

    async def main():
        latencies, bad = [], 0
        deadline = time.monotonic() + duration
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:

            async def worker(offset):
                nonlocal bad
                i = offset
                while time.monotonic() < deadline:
                    i += 1
                    headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                    if etag:
                        headers["If-None-Match"] = etag
                    started = time.perf_counter()
                    response = await client.get(path, headers=headers)
                    latencies.append((time.perf_counter() - started) * 1000)
                    bad += response.status_code != expect

            started = time.monotonic()
            await asyncio.gather(*(worker(n * 7919) for n in range(connections)))
            elapsed = time.monotonic() - started
        latencies.sort()
        return {
            "requests": len(latencies),
            "rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[int(len(latencies) * 0.99)],
            "unexpected_status": bad,
            "non_2xx_3xx": 0,
            "socket_errors": "",
        }

    return asyncio.run(main())


def _combine(results: list[dict]) -> dict:
    """Rounds of one kind together: total requests over total time; the median round's latencies."""
    total = sum(r["requests"] for r in results)
    seconds = sum(r["requests"] / r["rps"] for r in results if r["rps"])
    ordered = sorted(results, key=lambda r: r["rps"])
    middle = ordered[len(ordered) // 2]
    return {
        "requests": total,
        "rps": total / seconds if seconds else 0.0,
        "p50_ms": middle["p50_ms"],
        "p99_ms": middle["p99_ms"],
        "rounds_rps": [round(r["rps"]) for r in results],
        "unexpected_status": sum(r["unexpected_status"] for r in results),
        "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in results),
        "socket_errors": "; ".join(r["socket_errors"] for r in results if r["socket_errors"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per kind (split into rounds)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of baseline and poll")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warm-up", type=int, default=20, help="seconds of polling before the rounds")
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL is up")
    parser.add_argument("--redis-url", help="use this Redis instead of a private embedded Valkey")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return

    workdir = Path(tempfile.mkdtemp(prefix="vm-bench-poll-"))
    env = {
        **os.environ,
        "VECTORMLOPS_VAR_DIR": str(workdir),
        "SECRET_KEY": "bench-only-secret-long-enough-for-the-fifty-character-rule",
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "vectormlops.settings",
        "PYTHONPATH": str(BASE_DIR),
        "LOG_LEVEL": "WARNING",
    }
    valkey = None
    use_pg = not args.sqlite and reachable("127.0.0.1", 5432)
    if use_pg:
        env["DATABASE_URL"] = fresh_postgres_database(BENCH_DB)
    else:
        env.pop("DATABASE_URL", None)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    else:
        # A Redis of its own, as production has (the throttle counters live there).
        from vectormlops.embedded_redis import embedded_valkey

        valkey = embedded_valkey()
        env["REDIS_URL"] = valkey.__enter__()[0]
    python = sys.executable
    server = None
    try:
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
        tokens_file = workdir / "tokens.txt"
        subprocess.run([python, __file__, "--prepare", str(tokens_file)], cwd=BASE_DIR, env=env, check=True)
        port = free_port()
        gunicorn = str(Path(python).with_name("gunicorn"))
        server = subprocess.Popen(
            [gunicorn, "vectormlops.wsgi:application", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}"]
            + ["--log-level", "warning", "--backlog", "2048"],
            cwd=BASE_DIR,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/api/v1/robot/ping")

        import httpx

        # Each robot polls once first (the answer and its ETag; warms the token cache and last-seen).
        tokens = tokens_file.read_text().split()
        etag = ""
        with httpx.Client(base_url=base, timeout=10) as client:
            for token in tokens:
                response = client.get(
                    "/api/v1/robot/model?dataset=vector", headers={"Authorization": f"Bearer {token}"}
                )
                response.raise_for_status()
                etag = response.headers["ETag"]
        runner = run_wrk if shutil.which("wrk") else run_httpx
        options = {"tokens_file": tokens_file, "duration": args.duration, "connections": args.connections}
        poll_path = "/api/v1/robot/model?dataset=vector"
        runner(base, "/api/v1/robot/ping", etag="", expect=200, **{**options, "duration": 2})  # warm-up
        # Each worker reads each robot's token from the database once (then again only after a robot changes): warm
        # up until every worker has seen every token, so that the rounds measure the steady state.
        warm_up = runner(base, poll_path, etag=etag, expect=304, **{**options, "duration": args.warm_up})
        # Alternate short rounds of the two, so that a change in the machine's load (other processes on the same
        # cores) affects both alike instead of whichever ran second.
        rounds = {"baseline": [], "poll": []}
        per_round = max(2, args.duration // args.rounds)
        for _ in range(args.rounds):
            rounds["baseline"].append(
                runner(base, "/api/v1/robot/ping", etag="", expect=200, **{**options, "duration": per_round})
            )
            rounds["poll"].append(runner(base, poll_path, etag=etag, expect=304, **{**options, "duration": per_round}))
        baseline, poll = (_combine(rounds[kind]) for kind in ("baseline", "poll"))
        ratio = poll["rps"] / baseline["rps"]
        errors = poll["unexpected_status"] + baseline["unexpected_status"]
        bound = float(tokens_file.with_suffix(".bound").read_text())
        report = {
            "nproc": os.cpu_count(),
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "staleness_bound_s": bound,
            "server": "gunicorn, 2 sync workers, 127.0.0.1",
            "database": "PostgreSQL" if use_pg else "SQLite",
            "cache": args.redis_url or "private embedded Valkey",
            "load_generator": f"{runner.__name__.removeprefix('run_')} -t2 -c{args.connections}, "
            f"{args.rounds} alternating rounds of {per_round}s each",
            "robots": len(tokens),
            "poll_warm_up": {"seconds": args.warm_up, "rps": round(warm_up["rps"])},
            "trivial_view": baseline,
            "poll_304": poll,
            "ratio": round(ratio, 3),
            "errors": errors,
        }
        print(json.dumps(report, indent=2))
        print(
            f"\nbaseline (trivial view): {baseline['rps']:.0f} req/s, p50 {baseline['p50_ms']:.2f} ms, "
            f"p99 {baseline['p99_ms']:.2f} ms\n"
            f"robot poll (304):        {poll['rps']:.0f} req/s, p50 {poll['p50_ms']:.2f} ms, "
            f"p99 {poll['p99_ms']:.2f} ms\n"
            f"ratio {ratio:.1%} (target >= 70%), unexpected statuses: {errors}; nproc {os.cpu_count()}, "
            f"staleness bound {bound} s"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if valkey is not None:
            valkey.__exit__(None, None, None)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
