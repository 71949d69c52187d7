"""kq consume per message through a real ``brokerq run`` with ``processes: 1`` and ``2`` vs go-queue.

``brokerq run CONFIG`` (the supervisor and its children when processes > 1, exactly what a
user starts) runs the no-op handler ``bench.counting:count`` with ``concurrency: 8`` on an
empty 4-partition topic; once its group is stable with every child holding partitions, N
100 B records are written (raw producer, acks=1) and read. Waiting for the group first keeps
a rebalance out of the figure (a second child joining late would otherwise find the first
one done). The rate runs from the moment every child has handled a message to the N-th, over
the messages handled in that span (``first_to_nth_per_s`` keeps the whole span); the fill
runs during the first fraction of a second and shares the 2 cores. go-queue's Queue with 8
processors reads a topic filled beforehand, first handled to N-th, once per repetition, and
stands on both rows. Targets (issue 16): processes 1 >= 0.6x go-queue, 2 >= 1.0x go-queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from bench import counting
from bench.driver import Run
from bench.harness import Figures, run_python
from bench.measure import Measure
from bench.measures import kq_batch, kq_push
from bench.settings import REPO

CONCURRENCY = 8
PROCESSES = (1, 2)

CONFIG = """\
name: bench-procs
kq:
  brokers: [{bootstrap}]
  topic: {topic}
  group: {group}
  offset: first
handler: bench.counting:count
concurrency: {concurrency}
processes: {processes}
shutdown_timeout: 10s
log_level: WARNING
"""


def _read(folder: Path) -> list[list[tuple[float, int, float, float]]]:
    """Every child's lines: (time, count, first, last)."""
    out = []
    for f in folder.iterdir():
        rows = []
        for ln in f.read_text().splitlines():
            parts = ln.split()
            if len(parts) == 4:
                rows.append((float(parts[0]), int(parts[1]), float(parts[2]), float(parts[3])))
        if rows:
            out.append(rows)
    return out


def _count_at(rows: list[tuple[float, int, float, float]], t: float) -> int:
    """A child's count at time ``t`` (its last line at or before ``t``)."""
    c = 0
    for when, count, _first, _last in rows:
        if when > t:
            break
        c = count
    return c


def _wait_for_group(
    bootstrap: str, group: str, members: int, proc: subprocess.Popen[str], timeout: float = 90
) -> None:
    """Until ``group`` is stable with ``members`` members that all hold partitions."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    seen = "no description"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"brokerq run exited {proc.returncode}: {err[-800:]}")
        try:
            d = admin.describe_consumer_groups([group])[group].result(10)
            holding = [m for m in d.members if m.assignment.topic_partitions]
            seen = f"{d.state}, {len(d.members)} members, {len(holding)} with partitions"
            if d.state == ConsumerGroupState.STABLE and len(holding) == members:
                return
        except Exception as e:  # the group does not exist yet
            seen = str(e)
        time.sleep(0.2)
    raise RuntimeError(f"group {group} not stable with {members} members in {timeout:.0f}s: {seen}")


def brokerq_run(
    n: int, topic: str, group: str, bootstrap: str, processes: int, timeout: float = 240
) -> Figures:
    """``brokerq run`` on a temporary config until the children have handled N (this process)."""
    with tempfile.TemporaryDirectory(prefix="bench-procs-") as tmp:
        folder = Path(tmp) / "counts"
        folder.mkdir()
        cfg = Path(tmp) / "procs.yaml"
        cfg.write_text(
            CONFIG.format(
                bootstrap=bootstrap,
                topic=topic,
                group=group,
                concurrency=CONCURRENCY,
                processes=processes,
            )
        )
        env = dict(os.environ, **{counting.ENV: str(folder)})
        cmd = [sys.executable, "-m", "brokerq", "run", str(cfg), "--no-schedules"]
        p = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for_group(bootstrap, group, processes, p)
            run_python(kq_push.raw, n=n, size=100, topic=topic, acks="1", bootstrap=bootstrap)
            deadline = time.monotonic() + timeout
            while True:
                children = _read(folder)
                total = sum(rows[-1][1] for rows in children)
                if total >= n:
                    break
                if p.poll() is not None:
                    err = p.stderr.read() if p.stderr else ""
                    raise RuntimeError(f"brokerq run exited {p.returncode}: {err[-800:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {total} of {n} handled in {timeout:.0f}s")
                time.sleep(0.1)
            time.sleep(3 * counting.INTERVAL)  # every child's last line written
            children = _read(folder)
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    first = min(rows[-1][2] for rows in children)
    last = max(rows[-1][3] for rows in children)
    total = sum(rows[-1][1] for rows in children)
    all_in = max(rows[-1][2] for rows in children)  # every child has handled a message
    before = sum(_count_at(rows, all_in) for rows in children)
    return {
        "count": total - before,
        "elapsed_s": last - all_in,
        "processes": processes,
        "children_seen": len(children),
        "handled": total,
        "first_to_nth_per_s": total / (last - first) if last > first else None,
        "concurrency": CONCURRENCY,
    }


def run(r: Run) -> None:
    n = r.n("kq.consume")
    kafka = r.settings.kafka
    t = kq_batch.fill(r, "procs", n)  # go-queue's; brokerq's groups join empty topics
    for rep in range(r.reps):  # a fresh group per repetition reads the topic again
        g = f"{r.settings.run_id}-{rep}"
        go = r.go(
            "kq-consume",
            topic=t,
            group=f"pg-{g}",
            n=n,
            brokers=kafka,
            processors=CONCURRENCY,
            timeout="180s",
        )
        for procs in PROCESSES:
            m = f"kq.consume.p{procs}"
            label = f"kq consume no-op, brokerq run processes: {procs} ({CONCURRENCY} threads each)"
            empty = r.topic(f"procs{procs}-{rep}")
            group = f"p{procs}-{g}"
            call = partial(
                brokerq_run, n=n, topic=empty, group=group, bootstrap=kafka, processes=procs
            )
            r.measure(m, "brokerq", label, call, rep)
        # one go-queue figure per repetition stands against both rows
        fig = r.measure("kq.consume.p1", "go-queue", "kq consume no-op, go-queue", go, rep)
        if fig is not None:
            r.samples.append(dict(fig, measure="kq.consume.p2"))


MEASURE = Measure(name="kq-consume-procs", key="kqp", run=run, steps=3, extra_steps=1)
