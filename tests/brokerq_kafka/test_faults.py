"""Fault tests with real processes: SIGKILLed consumers, a group of two, a broker restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from brokerq.message import Message
from brokerq_kafka import KqConf, Pusher, Queue
from tests.contract import wait_for

pytestmark = pytest.mark.integration

ConfFactory = Callable[..., KqConf]
ROOT = Path(__file__).resolve().parents[2]


def spawn(conf: KqConf, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.brokerq_kafka.consumer_proc"]
    cmd += [conf.brokers[0], conf.topic, conf.group, str(out), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)


def lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [x for x in path.read_text().splitlines() if x]


@pytest.mark.serial  # six consumer processes through 20,000 messages: needs the machine alone
def test_sigkilled_consumers_lose_nothing(make_conf: ConfFactory, tmp_path: Path) -> None:
    n, kills = 20_000, 5
    conf = make_conf()
    out = tmp_path / "handled.txt"
    stop_pushing = threading.Event()

    def produce() -> None:  # a stream that keeps arriving while consumers die
        with Pusher(conf.brokers, conf.topic) as pusher:
            for i in range(n):
                pusher.push(str(i), key=f"k{i % 97}")
                if i % 500 == 499:
                    time.sleep(0.05)
                if stop_pushing.is_set():
                    break

    producer = threading.Thread(target=produce)
    producer.start()
    handled_before = 0
    for k in range(kills):
        proc = spawn(conf, out, "--sleep", "0.002")
        # kill it once it has handled some fresh messages
        target = handled_before + 1500

        def progressed(t: int = target) -> bool:
            return len(lines(out)) >= t

        assert wait_for(progressed, timeout=60), f"kill {k}: consumer made no progress"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        handled_before = len(lines(out))
    producer.join(120)
    final = spawn(conf, out, "--idle-exit", "6")
    assert final.wait(180) == 0
    seen = Counter(lines(out))
    missing = n - len({v for v in seen if v.isdigit() and int(v) < n})
    dups = sum(c - 1 for c in seen.values() if c > 1)
    # per kill at most what was handled since the last commit (0.2s at ~4k/s) plus in flight
    bound = kills * (2000 + 8 * 4 + 2000)
    print(
        f"\nkills={kills} handled={sum(seen.values())} unique={len(seen)} duplicates={dups} (bound {bound})"
    )
    assert missing == 0, f"{missing} messages lost"
    assert dups <= bound


def test_two_processes_split_partitions(make_conf: ConfFactory, tmp_path: Path) -> None:
    n = 20_000
    conf = make_conf()
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = [spawn(conf, o, "--idle-exit", "8", "--sleep", "0.0005") for o in outs]
    time.sleep(3.0)  # both join before the data arrives
    with Pusher(conf.brokers, conf.topic) as pusher:
        for i in range(n):
            pusher.push(str(i), key=f"k{i}")
    for p in procs:
        assert p.wait(180) == 0
    a, b = (Counter(lines(o)) for o in outs)
    print(f"\nprocess a: {sum(a.values())}, process b: {sum(b.values())}")
    assert set(a) | set(b) == {str(i) for i in range(n)}
    assert a and b, "one process got nothing: partitions were not split"
    assert len(set(a) & set(b)) <= 2000, "too much overlap for a stable group"


@pytest.mark.slow
def test_broker_restart_while_pushing_loses_nothing(
    make_conf: ConfFactory, services: object
) -> None:
    n = 30_000
    conf = make_conf(processors=8)
    pusher = Pusher(conf.brokers, conf.topic, push_timeout=120)
    for i in range(n // 3):
        pusher.push(str(i))
    services.kill("kafka")  # type: ignore[attr-defined]
    for i in range(n // 3, 2 * n // 3):
        pusher.push(str(i))  # buffered in librdkafka while the broker is down
    services.restart("kafka")  # type: ignore[attr-defined]
    for i in range(2 * n // 3, n):
        pusher.push(str(i))
    pusher.close()  # flushes; raises if anything failed
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        with lock:
            seen[msg.text()] += 1

    queue = Queue(conf, handle)
    thread = threading.Thread(target=queue.start, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: len(seen) >= n, timeout=120), f"{len(seen)} of {n}"
        time.sleep(1.0)
    finally:
        queue.stop()
        thread.join(30)
    assert set(seen) == {str(i) for i in range(n)}
    assert max(seen.values()) == 1, "idempotent producer wrote duplicates"


def test_sigterm_stops_gracefully(make_conf: ConfFactory, tmp_path: Path) -> None:
    conf = make_conf()
    out = tmp_path / "h.txt"
    with Pusher(conf.brokers, conf.topic) as pusher:
        for i in range(200):
            pusher.push(str(i))
    proc = spawn(conf, out)
    assert wait_for(lambda: len(lines(out)) >= 200, timeout=60)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0
    again = spawn(conf, out, "--idle-exit", "4")
    assert again.wait(60) == 0
    assert len(lines(out)) == 200, "committed work ran again after a graceful stop"
