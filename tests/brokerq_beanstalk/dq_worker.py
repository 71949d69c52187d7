"""A consumer process for the kill -9 and crash-loop tests:
``python dq_worker.py <conf json> <redis url> <key> [count|exit]``.

``count`` (default): the handler counts each run (INCR <key>runs:<id>), works a little, then
records its success (RPUSH <key>succ:<id> <pid>) just before returning.
``exit``: the handler records its attempt (RPUSH <key>attempts <attempt>) and kills the
process with ``os._exit(3)`` (a segfault / OOM stand-in). SIGTERM stops it gracefully.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import redis

from brokerq.message import Message
from brokerq_beanstalk import Consumer, DqConf


def main() -> None:
    conf = DqConf.model_validate_json(sys.argv[1])
    r = redis.Redis.from_url(sys.argv[2])
    key = sys.argv[3]
    mode = sys.argv[4] if len(sys.argv) > 4 else "count"
    pid = str(os.getpid())
    logging.basicConfig(level=logging.WARNING, format=f"[{pid}] %(name)s %(message)s")

    def handler(msg: Message) -> None:
        if mode == "exit":
            r.rpush(f"{key}attempts", msg.attempt)
            os._exit(3)
        r.incr(f"{key}runs:{msg.id}")
        time.sleep(0.03)
        r.rpush(f"{key}succ:{msg.id}", pid)

    consumer = Consumer(conf, shutdown_timeout=10)
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    r.sadd(f"{key}started", pid)
    consumer.consume(handler)


if __name__ == "__main__":
    main()
