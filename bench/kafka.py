"""Kafka throughput: raw confluent-kafka vs brokerq's Pusher and Queue (prints, no asserts).

    .venv/bin/python bench/kafka.py [-n 200000] [--bootstrap 127.0.0.1:9092]

(a) raw produce loop + flush, (b) Pusher.push loop + flush, same settings (acks=all,
idempotence, lz4); (c) raw consume loop with store_offsets; (d) Queue with a no-op handler
and 8 processors. Also the acks=1 variants of (a) and (b).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from brokerq.message import Message
from brokerq_kafka import KqConf, Pusher, Queue

VALUE = b"x" * 100


def make_topic(bootstrap: str, partitions: int = 4) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
        name
    ].result(30)
    time.sleep(1.0)
    return name


def drop_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics(names, operation_timeout=10).values():
        try:
            f.result(30)
        except Exception:
            pass


def raw_produce(bootstrap: str, topic: str, n: int, acks: str) -> float:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "enable.idempotence": acks == "all",
        "compression.type": "lz4",
    }
    p = Producer(conf)
    produce = p.produce
    start = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                produce(topic, VALUE)
                break
            except BufferError:
                p.poll(0.01)
    p.flush()
    return n / (time.perf_counter() - start)


def pusher_produce(bootstrap: str, topic: str, n: int, acks: str, with_id: bool = True) -> float:
    with Pusher(bootstrap, topic, acks=acks, with_id=with_id) as pusher:
        push = pusher.push
        start = time.perf_counter()
        for _ in range(n):
            push(VALUE)
        pusher.flush()
        return n / (time.perf_counter() - start)


def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.offset.store": False,
        }
    )
    c.subscribe([topic])
    seen = 0
    start = None
    while seen < n:
        for m in c.consume(500, 1.0):
            if m.error():
                continue
            if start is None:
                start = time.perf_counter()
            c.store_offsets(m)
            seen += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    c.close()
    return n / elapsed


def queue_consume(bootstrap: str, topic: str, n: int) -> float:
    conf = KqConf(
        brokers=bootstrap,
        topic=topic,
        group=f"q-{uuid.uuid4().hex[:8]}",
        offset="first",
        processors=8,
    )
    count = [0]
    first: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def handler(msg: Message) -> None:
        with lock:
            if not first:
                first.append(time.perf_counter())
            count[0] += 1
            if count[0] >= n:
                done.set()

    q = Queue(conf, handler)
    t = threading.Thread(target=q.start, daemon=True)
    t.start()
    done.wait()
    elapsed = time.perf_counter() - first[0]
    q.stop()
    t.join(60)
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--only", default="abcd1", help="subset of a,b,c,d and 1 (acks=1 variants)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n, bs = args.n, args.bootstrap
    topics: list[str] = []
    results: dict[str, float] = {}

    def run(label: str, fn: Any, *a: Any) -> float:
        rate = float(fn(*a))
        results[label] = rate
        print(f"{label:<40} {rate:>12,.0f} msg/s", flush=True)
        return rate

    print(f"n={n} value=100B bootstrap={bs}")
    topic = make_topic(bs)
    topics.append(topic)
    if "a" in args.only:
        run("(a) raw produce acks=all", raw_produce, bs, topic, n, "all")
    if "b" in args.only:
        run("(b) Pusher.push acks=all", pusher_produce, bs, topic, n, "all")
    if "1" in args.only:
        t1 = make_topic(bs)
        topics.append(t1)
        run("(a1) raw produce acks=1", raw_produce, bs, t1, n, "1")
        run("(b1) Pusher.push acks=1", pusher_produce, bs, t1, n, "1")
        run("(b1x) Pusher.push acks=1 with_id=False", pusher_produce, bs, t1, n, "1", False)
    if ("c" in args.only or "d" in args.only) and not ("a" in args.only or "b" in args.only):
        raw_produce(bs, topic, n, "1")  # something to consume
    if "c" in args.only:
        run("(c) raw consume + store_offsets", raw_consume, bs, topic, n)
    if "d" in args.only:
        run("(d) Queue no-op handler, 8 processors", queue_consume, bs, topic, n)
    for name, num, den in (("b/a", "(b)", "(a)"), ("b1/a1", "(b1)", "(a1)"), ("d/c", "(d)", "(c)")):
        top = next((v for k, v in results.items() if k.startswith(num)), None)
        bot = next((v for k, v in results.items() if k.startswith(den)), None)
        if top and bot:
            print(f"ratio {name}: {top / bot:.2f}")
    drop_topics(bs, topics)


if __name__ == "__main__":
    main()
