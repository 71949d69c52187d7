"""A consumer process for fault tests: runs a kq Queue and appends each handled value to a file.

    python -m tests.brokerq_kafka.consumer_proc BOOTSTRAP TOPIC GROUP OUTFILE [--sleep S]
        [--idle-exit S] [--fail VALUE --until N] [--exit-on VALUE] [--attempts]
        [--max-attempts N --backoff S]

``--fail VALUE --until N``: the handler raises for VALUE on attempts below N. ``--exit-on
VALUE``: the handler kills the process (``os._exit``) for VALUE. ``--attempts``: each line is
``value attempt``.

The file is line-buffered (one write per message), so a SIGKILL loses nothing already written.
With ``--idle-exit`` the process stops gracefully after that many seconds without a message.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time

from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq_kafka import KqConf, Queue


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("group")
    ap.add_argument("out")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--idle-exit", type=float, default=0.0)
    ap.add_argument("--processors", type=int, default=8)
    ap.add_argument("--fail", default=None)
    ap.add_argument("--until", type=int, default=1)
    ap.add_argument("--exit-on", default=None)
    ap.add_argument("--attempts", action="store_true")
    ap.add_argument("--max-attempts", type=int, default=5)
    ap.add_argument("--backoff", type=float, default=1.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    conf = KqConf(
        brokers=args.bootstrap,
        topic=args.topic,
        group=args.group,
        offset="first",
        processors=args.processors,
        commit_interval=0.2,
        retry_tiers=[1.0, 5.0],
        client_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
    )
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    lock = threading.Lock()
    last = [time.monotonic()]

    def handle(msg: Message) -> None:
        if args.sleep:
            time.sleep(args.sleep)
        value = msg.value.decode()
        with lock:
            out.write(f"{value} {msg.attempt}\n" if args.attempts else value + "\n")
            last[0] = time.monotonic()
        if value == args.exit_on:
            os._exit(3)
        if value == args.fail and msg.attempt < args.until:
            raise RuntimeError(f"failing {value} on attempt {msg.attempt}")

    policy = RetryPolicy(
        max_attempts=args.max_attempts, backoff=args.backoff, max_backoff=args.backoff, jitter=False
    )
    queue = Queue(conf, handle, shutdown_timeout=10, retry=policy)
    signal.signal(signal.SIGTERM, lambda *_: queue.stop())
    if args.idle_exit:

        def watchdog() -> None:
            while True:
                time.sleep(0.2)
                if time.monotonic() - last[0] > args.idle_exit:
                    queue.stop()
                    return

        threading.Thread(target=watchdog, daemon=True).start()
    print("ready", flush=True)
    queue.start()
    out.close()


if __name__ == "__main__":
    main()
