"""A worker process over a sqlite file, for the kill -9 and multi-process tests.

    python sqlite_worker.py DB RECORD_DIR VISIBILITY_TIMEOUT CONCURRENCY SLEEP

The handler appends ``S <pid> <job id> <attempt> <time>`` to ``RECORD_DIR/<pid>.log`` when it
starts a job and ``E ...`` when it ends; it sleeps ``SLEEP`` seconds in between, or the float
in the job's value when SLEEP is ``value``. SIGTERM stops the worker gracefully.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from brokerq.embedded import SqliteBroker
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.worker import Worker


def main() -> None:
    db, record_dir, lease, concurrency, sleep = sys.argv[1:6]
    broker = SqliteBroker({"path": db, "visibility_timeout": float(lease), "poll_interval": 0.02})
    log = Path(record_dir) / f"{os.getpid()}.log"

    def record(kind: str, msg: Message) -> None:
        line = f"{kind} {os.getpid()} {msg.id} {msg.attempt} {time.time():.6f}\n"
        with open(log, "a") as f:  # one write per line: whole lines even when killed
            f.write(line)

    def handler(msg: Message) -> None:
        record("S", msg)
        time.sleep(float(msg.value) if sleep == "value" else float(sleep))
        record("E", msg)

    worker = Worker(
        broker.source,
        concurrency=int(concurrency),
        retry=RetryPolicy(max_attempts=5, backoff=0.05, jitter=False),
        shutdown_timeout=30,
        receive_timeout=0.2,
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    (Path(record_dir) / f"{os.getpid()}.ready").touch()
    worker.consume(handler)
    broker.close()


if __name__ == "__main__":
    main()
