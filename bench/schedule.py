"""Lateness of schedule fires: from the tick to the handler starting, through real processes.

    .venv/bin/python bench/schedule.py                      # sqlite and dq, 60 ticks each
    .venv/bin/python bench/schedule.py --ticks 30 --only sqlite
    .venv/bin/python bench/schedule.py --only kq --schedulers 3

One or more ``brokerq schedule run`` processes fire ``every: 1s`` into the broker; one
``brokerq run --no-schedules`` worker runs ``record`` below, which notes when each message
arrived. Lateness = handler start - tick (``brokerq-fire-time``); "enqueue" = the message's
``created_at`` - tick (the scheduler's share). Prints p50 / p99 / max and how many arrived
early (must be 0) or more than once. Needs the local services for dq and kq
(scripts/services up). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brokerq.headers import FIRE_TIME
from brokerq.message import Message
from brokerq.schedule import parse_fire_time

ROOT = Path(__file__).resolve().parent.parent
BROKERQ = str(Path(sys.executable).with_name("brokerq"))
BEANSTALKS = ["127.0.0.1:11300", "127.0.0.1:11301", "127.0.0.1:11302"]
REDIS = "redis://127.0.0.1:6379/0"
KAFKA = "127.0.0.1:9092"


def record(msg: Message) -> None:
    """The handler: ``<tick> <created_at> <received>`` appended to $BQ_BENCH_FIRES."""
    now = time.time()
    with open(os.environ["BQ_BENCH_FIRES"], "a") as f:
        f.write(f"{msg.headers.get(FIRE_TIME)} {msg.created_at:.6f} {now:.6f}\n")


def broker_yaml(kind: str, name: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"embedded: {{path: '{tmp / 'jobs.db'}', poll_interval: 10ms}}\n"
    if kind == "dq":
        nodes = ", ".join(f"{{endpoint: '{e}', tube: '{name}'}}" for e in BEANSTALKS)
        return f"dq:\n  beanstalks: [{nodes}]\n  redis: {{url: '{REDIS}', prefix: '{name}:'}}\n"
    return (
        f"kq:\n  brokers: [{KAFKA}]\n  topic: {name}\n  group: {name}\n  offset: first\n"
        "  client_config: {session.timeout.ms: 6000, heartbeat.interval.ms: 500}\n"
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def measure(kind: str, ticks: int, schedulers: int) -> dict[str, float]:
    name = f"bench-sched-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config = tmp / "sched.yaml"
        config.write_text(
            f"name: {name}\nhandler: bench.schedule:record\nlog_level: WARNING\n"
            + broker_yaml(kind, name, tmp)
            + "schedules:\n  - {name: beat, every: 1s}\n"
        )
        fires = tmp / "fires.txt"
        env = dict(os.environ, BQ_BENCH_FIRES=str(fires))
        procs = [
            subprocess.Popen([BROKERQ, "run", "--no-schedules", str(config)], cwd=ROOT, env=env)
        ]
        procs += [
            subprocess.Popen([BROKERQ, "schedule", "run", str(config)], cwd=ROOT, env=env)
            for _ in range(schedulers)
        ]
        try:
            warmup = 3  # the first ticks include process start-up and (kq) the group join
            deadline = time.monotonic() + ticks + 90
            while time.monotonic() < deadline:
                n = len(fires.read_text().splitlines()) if fires.exists() else 0
                if n >= ticks + warmup:
                    break
                time.sleep(0.2)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        text = fires.read_text() if fires.exists() else ""
        rows = [line.split() for line in text.splitlines()][warmup:]
    cleanup(kind, name)
    if not rows:
        raise SystemExit(f"{kind}: no fire arrived (see the processes' stderr above)")
    seen: dict[str, int] = {}
    late, enqueue = [], []
    for tick_text, created, received in rows:
        tick = parse_fire_time(tick_text).timestamp()
        seen[tick_text] = seen.get(tick_text, 0) + 1
        late.append(float(received) - tick)
        enqueue.append(float(created) - tick)
    return {
        "ticks": len(seen),
        "p50_ms": percentile(late, 50) * 1000,
        "p99_ms": percentile(late, 99) * 1000,
        "max_ms": max(late) * 1000,
        "enqueue_p50_ms": percentile(enqueue, 50) * 1000,
        "enqueue_p99_ms": percentile(enqueue, 99) * 1000,
        "early": sum(1 for x in late if x < 0),
        "duplicates": sum(n - 1 for n in seen.values()),
    }


def cleanup(kind: str, name: str) -> None:
    """Remove what a run left on the shared services (Redis keys, Kafka topics)."""
    try:
        if kind == "dq":
            import redis

            client = redis.Redis.from_url(REDIS)
            keys = list(client.scan_iter(match=f"{name}:*", count=1000))
            if keys:
                client.delete(*keys)
        elif kind == "kq":
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": KAFKA})
            topics = [name, f"{name}.dlq", f"{name}.schedules", f"{name}.schedules-leader"]
            for f in admin.delete_topics(topics, operation_timeout=10).values():
                try:
                    f.result(timeout=30)
                except Exception:
                    pass
    except Exception as e:
        print(f"cleanup of {kind} {name} failed: {e}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--only", default="sqlite,dq", help="comma list of sqlite, dq, kq")
    args = parser.parse_args()
    print(
        f"{'broker':<8} {'ticks':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'enq p50':>8} {'enq p99':>8} {'early':>5} {'dupes':>5}"
    )
    for kind in args.only.split(","):
        r = measure(kind.strip(), args.ticks, args.schedulers)
        print(
            f"{kind:<8} {r['ticks']:>5.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['max_ms']:>8.1f} {r['enqueue_p50_ms']:>8.1f} {r['enqueue_p99_ms']:>8.1f} "
            f"{r['early']:>5.0f} {r['duplicates']:>5.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
