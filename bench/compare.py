"""brokerq side by side with go-queue and the raw clients, against the same servers, in one run.

    bench/run                      # the one command: bootstrap, services, Go build, this script
    .venv/bin/python bench/compare.py [--quick] [--only kq,kqc,dq,at,embedded,rss] [--rss-jobs N]
        kq = push, kqc = consume, dq = delay + consume, at = lateness, rss = idle consumer memory

Every measure runs in its own process (a fresh interpreter for Python, the ``goqueue``
binary built from bench/goqueue for go-queue), one after another, so no measure shares a
thread, a connection or a GIL with another. Prints one table (measure | brokerq | raw / other
| go-queue | ratios) and writes bench/results/latest.json with the machine and every figure.

Consume figures are timed from the first handled message to the N-th (so a Kafka group join
or a connection set-up is not in them); push/put figures from the first call to the last ack
(brokerq Pusher: ``flush()`` returned; go-queue Pusher: ``Close()`` returned, acks=0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
KAFKA = "127.0.0.1:9092"
BEANSTALKS = ["127.0.0.1:11300", "127.0.0.1:11301", "127.0.0.1:11302"]
REDIS = "127.0.0.1:6379"
GOQ = (
    Path(os.environ.get("BROKERQ_BENCH_BIN", str(Path.home() / ".cache" / "brokerq" / "bench")))
    / "goqueue"
)
RUN_ID = (
    os.environ.get("BROKERQ_BENCH_RUN_ID") or time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:6]
)
os.environ["BROKERQ_BENCH_RUN_ID"] = RUN_ID  # children use the same id (tubes, Redis prefix)
REDIS_PREFIX = f"bench-{RUN_ID}:"  # brokerq's guard keys for this run; deleted at the end

# N per measure: (full, quick). go-queue's Pusher as shipped is bounded by kafka-go's 1 s
# BatchTimeout per chunk, so it gets a smaller N to keep the run short (rates are rates).
SIZES: dict[str, tuple[int, int]] = {
    "kq.push.100": (200_000, 100_000),
    "kq.push.1024": (100_000, 50_000),
    "gq.kq.push.100": (100_000, 50_000),
    "gq.kq.push.1024": (10_000, 5_000),
    "kq.consume": (200_000, 100_000),
    "dq.delay": (20_000, 5_000),
    "dq.at": (2_000, 500),
    "embedded": (20_000, 5_000),
    "rss": (1_000_000, 100_000),
}


# =============================================================================== helpers
def payload(size: int) -> bytes:
    return (b"0:" + b"x" * size)[:size]


def now_ns() -> int:
    return time.time_ns()


class FirstToNth:
    """Counts handled messages; records the first and the N-th; sets ``done`` at N."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def hit(self, *_: Any, **__: Any) -> None:
        t = time.perf_counter()
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first = t
            if self.count == self.n:
                self.last = t
                self.done.set()

    def result(self, timeout: float) -> float:
        if not self.done.wait(timeout):
            raise RuntimeError(f"only {self.count} of {self.n} handled in {timeout:.0f}s")
        return self.last - self.first


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


def lateness_stats(late_ms: list[float]) -> dict[str, Any]:
    v = sorted(late_ms)
    return {
        "lateness_ms_p50": percentile(v, 0.50),
        "lateness_ms_p99": percentile(v, 0.99),
        "lateness_ms_max": v[-1] if v else float("nan"),
        "lateness_ms_min": v[0] if v else float("nan"),
        "early": sum(1 for x in v if x < 0),
    }


# ----------------------------------------------------------------- raw beanstalkd protocol
class RawBeanstalk:
    """Minimal beanstalkd client speaking the text protocol with pipelining (for bulk load
    and cleanup only: greenstalk does one round trip per command)."""

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        host, port = endpoint.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb", buffering=1 << 20)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rf.close()
            self.sock.close()

    def __enter__(self) -> RawBeanstalk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> bytes:
        line = self.rf.readline()
        if not line:
            raise ConnectionError("beanstalkd closed the connection")
        return line.rstrip(b"\r\n")

    def cmd(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self._line()

    def stats_tube(self, tube: str) -> dict[str, str]:
        head = self.cmd(f"stats-tube {tube}")
        if not head.startswith(b"OK "):
            return {}
        body = self.rf.read(int(head.split()[1]) + 2).decode()
        out = {}
        for ln in body.splitlines():
            if ": " in ln:
                k, v = ln.split(": ", 1)
                out[k.strip()] = v.strip()
        return out

    def stats(self) -> dict[str, str]:
        head = self.cmd("stats")
        body = self.rf.read(int(head.split()[1]) + 2).decode()
        return dict(
            (k.strip(), v.strip())
            for k, v in (ln.split(": ", 1) for ln in body.splitlines() if ": " in ln)
        )

    def put_many(
        self,
        tube: str,
        bodies: Iterable[bytes],
        *,
        pri: int = 2,
        delay: int = 0,
        ttr: int = 5,
        window: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        assert self.cmd(f"use {tube}").startswith(b"USING")
        sent = 0
        chunk: list[bytes] = []

        def flush() -> None:
            nonlocal sent
            if not chunk:
                return
            self.sock.sendall(b"".join(chunk))
            for _ in range(len(chunk)):
                r = self._line()
                if not r.startswith(b"INSERTED"):
                    raise RuntimeError(f"put failed: {r!r}")
            sent += len(chunk)
            chunk.clear()
            if progress:
                progress(sent)

        for b in bodies:
            chunk.append(b"put %d %d %d %d\r\n%s\r\n" % (pri, delay, ttr, len(b), b))
            if len(chunk) >= window:
                flush()
        flush()
        return sent

    def drain(self, tube: str, window: int = 2000) -> int:
        """Delete every job of ``tube`` on this node (delayed ones are kicked first)."""
        assert self.cmd(f"use {tube}").startswith(b"USING")
        assert self.cmd(f"watch {tube}").startswith(b"WATCHING")
        if tube != "default":
            self.cmd("ignore default")
        deleted = 0
        while True:
            st = self.stats_tube(tube)
            if not st:
                return deleted
            waiting = sum(
                int(st.get(k, 0))
                for k in ("current-jobs-ready", "current-jobs-delayed", "current-jobs-buried")
            )
            if waiting == 0:
                return deleted
            if int(st.get("current-jobs-ready", 0)) == 0:
                self.cmd(f"kick {max(waiting, 1)}")
            self.sock.sendall(b"reserve-with-timeout 0\r\n" * window)
            ids = []
            for _ in range(window):
                r = self._line()
                if r.startswith(b"RESERVED"):
                    _, jid, nbytes = r.split()
                    self.rf.read(int(nbytes) + 2)
                    ids.append(int(jid))
            if ids:
                self.sock.sendall(b"".join(b"delete %d\r\n" % j for j in ids))
                for _ in ids:
                    self._line()
                deleted += len(ids)
            elif int(st.get("current-jobs-reserved", 0)) == 0 and waiting == 0:
                return deleted
            else:
                time.sleep(0.05)


def drop_redis_keys(prefix: str = REDIS_PREFIX) -> int:
    """Delete the guard keys brokerq wrote in this run (go-queue's expire after 1 h)."""
    import redis

    r = redis.Redis.from_url(f"redis://{REDIS}/0")
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])
    r.close()
    return len(keys)


def drain_tube(tube: str, endpoints: list[str] = BEANSTALKS) -> int:
    total = 0
    for e in endpoints:
        with contextlib.suppress(OSError, ConnectionError), RawBeanstalk(e) as b:
            total += b.drain(tube)
    return total


# ====================================================================== child measures
# Each runs in a fresh interpreter (``compare.py --child JSON``) and returns a dict.
def bench_module(name: str) -> Any:
    """bench/<name>.py loaded as a module: the per-backend measures are written once, there."""
    import importlib.util

    path = HERE / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def child_kq_push_brokerq(n: int, size: int, topic: str, acks: str) -> dict[str, Any]:
    bk = bench_module("kafka")
    bk.VALUE = payload(size)  # bench/kafka.py pushes its module-level VALUE
    rate = bk.pusher_produce(KAFKA, topic, n, acks)
    return {"count": n, "elapsed_s": n / rate, "acks": acks, "size": size, "via": "bench/kafka.py"}


def child_kq_push_raw(n: int, size: int, topic: str, acks: str) -> dict[str, Any]:
    bk = bench_module("kafka")
    bk.VALUE = payload(size)
    rate = bk.raw_produce(KAFKA, topic, n, acks)
    return {"count": n, "elapsed_s": n / rate, "acks": acks, "size": size, "via": "bench/kafka.py"}


def child_kq_consume_brokerq(n: int, topic: str, group: str) -> dict[str, Any]:
    rate = bench_module("kafka").queue_consume(KAFKA, topic, n)  # first handled -> N-th
    return {"count": n, "elapsed_s": n / rate, "processors": 8, "via": "bench/kafka.py"}


def child_kq_consume_raw(n: int, topic: str, group: str) -> dict[str, Any]:
    rate = bench_module("kafka").raw_consume(KAFKA, topic, n)  # consume loop + store_offsets
    return {"count": n, "elapsed_s": n / rate, "via": "bench/kafka.py"}


def _beanstalk_nodes(tube: str) -> list[Any]:
    from brokerq_beanstalk import Beanstalk

    return [Beanstalk(endpoint=e, tube=tube) for e in BEANSTALKS]


def _dq_producer(tube: str) -> Any:
    from brokerq_beanstalk import Producer

    return Producer(_beanstalk_nodes(tube), replicas=3, min_written=2)


def _dq_consumer(tube: str) -> Any:
    from brokerq_beanstalk import Consumer, DqConf, RedisConf

    redis_conf = RedisConf(url=f"redis://{REDIS}/0", prefix=REDIS_PREFIX)
    conf = DqConf(beanstalks=_beanstalk_nodes(tube), redis=redis_conf)
    return Consumer(conf)


def _close(obj: Any) -> None:
    for name in ("close", "stop"):
        f = getattr(obj, name, None)
        if f is not None:
            with contextlib.suppress(Exception):
                f()
            return


def child_dq_delay_brokerq(n: int, size: int, tube: str, delay: float) -> dict[str, Any]:
    p = _dq_producer(tube)
    body = payload(size)
    start = time.perf_counter()
    for i in range(n):
        p.delay(b"%d:" % i + body, delay)
    el = time.perf_counter() - start
    _close(p)
    return {"count": n, "elapsed_s": el, "size": size, "nodes": 3}


def child_dq_delay_raw(n: int, size: int, tube: str, delay: float) -> dict[str, Any]:
    import greenstalk

    host, port = BEANSTALKS[0].split(":")
    c = greenstalk.Client((host, int(port)), use=tube)
    body = payload(size)
    start = time.perf_counter()
    for i in range(n):
        c.put(b"%d:" % i + body, priority=2, delay=int(delay), ttr=5)
    el = time.perf_counter() - start
    c.close()
    return {"count": n, "elapsed_s": el, "size": size, "nodes": 1}


def child_dq_consume_brokerq(n: int, tube: str) -> dict[str, Any]:
    cons = _dq_consumer(tube)
    c = FirstToNth(n)
    t = threading.Thread(target=cons.consume, args=(lambda msg: c.hit(),), daemon=True)
    start = time.perf_counter()
    t.start()
    el = c.result(180)
    total = c.last - start
    with contextlib.suppress(Exception):
        cons.stop()
    t.join(15)
    return {"count": n, "elapsed_s": el, "total_s": total, "nodes": 3}


def child_dq_consume_raw(n: int, tube: str) -> dict[str, Any]:
    import greenstalk

    host, port = BEANSTALKS[0].split(":")
    c = greenstalk.Client((host, int(port)), watch=tube)
    start = time.perf_counter()
    first = 0.0
    for i in range(n):
        job = c.reserve(timeout=30)
        if i == 0:
            first = time.perf_counter()
        c.delete(job)
    last = time.perf_counter()
    c.close()
    return {"count": n, "elapsed_s": last - first, "total_s": last - start, "nodes": 1}


def child_dq_at_brokerq(n: int, tube: str, lead: float, spread: float) -> dict[str, Any]:
    late: list[float] = []
    lock = threading.Lock()
    c = FirstToNth(n)

    def handle(msg):  # type: ignore[no-untyped-def]  # unannotated: receives the Message
        t = now_ns()
        body = getattr(msg, "value", getattr(msg, "body", msg))
        if isinstance(body, str):
            body = body.encode()
        target = int(bytes(body).split(b":", 1)[0])
        with lock:
            late.append((t - target) / 1e6)
        c.hit()

    cons = _dq_consumer(tube)
    th = threading.Thread(target=cons.consume, args=(handle,), daemon=True)
    th.start()
    p = _dq_producer(tube)
    base = time.time() + lead
    for i in range(n):
        at = base + spread * i / n
        p.at(b"%d:%d" % (int(at * 1e9), i), datetime.fromtimestamp(at, tz=timezone.utc))
    c.result(lead + spread + 60)
    with contextlib.suppress(Exception):
        cons.stop()
    _close(p)
    th.join(15)
    return {"count": n, "elapsed_s": lead + spread, **lateness_stats(late)}


def child_embedded_brokerq(n: int, concurrency: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import embedded as emb  # bench/embedded.py

    r = emb.run_sqlite(n, concurrency, synchronous="full")
    return {
        "count": n,
        "elapsed_s": n / r["e2e_per_s"],
        "concurrency": concurrency,
        "enqueue_per_s": r["enqueue_per_s"],
        "synchronous": "full",
    }


def child_embedded_huey(n: int, concurrency: int) -> dict[str, Any]:
    import logging

    from huey import SqliteHuey

    logging.getLogger("huey").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="brokerq-bench-huey-") as tmp:
        h = SqliteHuey("bench", filename=str(Path(tmp) / "huey.db"), fsync=True)
        done = threading.Event()
        lock = threading.Lock()
        count = [0]

        @h.task()
        def noop() -> None:
            with lock:
                count[0] += 1
                if count[0] >= n:
                    done.set()

        start = time.perf_counter()
        for _ in range(n):
            noop()
        enqueue = time.perf_counter() - start
        consumer = h.create_consumer(
            workers=concurrency, worker_type="thread", periodic=False, check_worker_health=False
        )
        start = time.perf_counter()
        consumer.start()
        if not done.wait(600):
            raise RuntimeError(f"huey: {count[0]} of {n}")
        el = time.perf_counter() - start
        consumer.stop(graceful=True)
    return {
        "count": n,
        "elapsed_s": el,
        "concurrency": concurrency,
        "enqueue_per_s": n / enqueue,
        "fsync": True,
    }


def child_dq_idle_consumer(tube: str, seconds: float) -> dict[str, Any]:
    """A brokerq Consumer on ``tube`` (whose jobs are all delayed), for the RSS measure."""
    cons = _dq_consumer(tube)
    handled = [0]

    def handle(msg):  # type: ignore[no-untyped-def]
        handled[0] += 1

    t = threading.Thread(target=cons.consume, args=(handle,), daemon=True)
    t.start()
    print("READY", flush=True)
    time.sleep(seconds)
    with contextlib.suppress(Exception):
        cons.stop()
    t.join(10)
    return {"handled": handled[0]}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    name[len("child_") :]: fn for name, fn in globals().items() if name.startswith("child_")
}


def child_main(spec: str) -> None:
    s = json.loads(spec)
    out = CHILDREN[s["fn"]](**s["kwargs"])
    print("RESULT " + json.dumps(out), flush=True)


# ======================================================================== the driver
class Run:
    def __init__(self, args: argparse.Namespace, progress: Any) -> None:
        self.args = args
        self.quick = args.quick
        self.progress = progress
        self.figures: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.reps = 1 if args.quick else args.reps
        self.errors: list[dict[str, Any]] = []
        self.log_lines: list[str] = []
        self.topics: list[str] = []

    def n(self, key: str) -> int:
        full, quick = SIZES[key]
        return quick if self.quick else full

    def note(self, text: str) -> None:
        self.log_lines.append(text)
        self.progress.log(text)

    # -- running one implementation --------------------------------------------------------
    def py(self, fn: str, _timeout: float = 300, **kwargs: Any) -> dict[str, Any]:
        spec = json.dumps({"fn": fn, "kwargs": kwargs})
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", spec],
            capture_output=True,
            text=True,
            timeout=_timeout,
            cwd=str(REPO),
            env=env,
        )
        for line in reversed(p.stdout.splitlines()):
            if line.startswith("RESULT "):
                return dict(json.loads(line[7:]))
        raise RuntimeError(f"{fn} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-1500:]}")

    def go(self, sub: str, _timeout: float = 300, **flags: Any) -> dict[str, Any]:
        if not GOQ.exists():
            raise RuntimeError(f"{GOQ} not built (bench/run builds it)")
        cmd = [str(GOQ), sub] + [f"-{k}={v}" for k, v in flags.items()]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=_timeout)
        for line in reversed(p.stdout.splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        raise RuntimeError(f"goqueue {sub} exited {p.returncode}: {p.stderr.strip()[-1500:]}")

    def measure(
        self,
        measure: str,
        impl: str,
        label: str,
        call: Callable[[], dict[str, Any]],
        rep: int = 0,
    ) -> dict[str, Any] | None:
        self.progress.step(
            f"{label} — {impl}" + (f" (rep {rep + 1}/{self.reps})" if self.reps > 1 else "")
        )
        try:
            r = call()
        except Exception as e:  # a failed measure is recorded, the run goes on
            msg = f"{type(e).__name__}: {e}"
            self.errors.append({"measure": measure, "impl": impl, "error": msg})
            self.note(f"[red]{label} / {impl} failed:[/red] {last_line(msg)[:200]}")
            return None
        if r.get("elapsed_s") and "count" in r:
            r["per_s"] = r["count"] / r["elapsed_s"] if r["elapsed_s"] > 0 else float("inf")
        r.update({"measure": measure, "impl": impl, "label": label, "rep": rep})
        self.samples.append(r)
        return r

    def finalize(self) -> None:
        """One figure per (measure, implementation): the median repetition by rate."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in self.samples:
            groups.setdefault((r["measure"], r["impl"]), []).append(r)
        self.figures = []
        for rs in groups.values():
            if len(rs) > 1 and all("per_s" in r for r in rs):
                ranked = sorted(rs, key=lambda r: r["per_s"])
                fig = dict(ranked[(len(ranked) - 1) // 2])  # lower median
                fig["reps"] = len(rs)
                fig["reps_per_s"] = [r["per_s"] for r in rs]
            else:
                fig = dict(rs[0], reps=len(rs))
            m = fig["measure"]
            if m.startswith("kq.push.") and m.endswith(".gq"):
                # one go-queue Pusher figure (acks=0) stands against both acks rows
                size = m.split(".")[2]
                for acks in ("all", "1"):
                    self.figures.append(dict(fig, measure=f"kq.push.{size}.acks{acks}"))
            self.figures.append(fig)

    # -- setup helpers ---------------------------------------------------------------------
    def topic(self, name: str, partitions: int = 4) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        topic = f"bench-{name}-{RUN_ID}"
        admin = AdminClient({"bootstrap.servers": KAFKA})
        for _t, f in admin.create_topics([NewTopic(topic, partitions, 1)]).items():
            f.result(30)
        # wait until the metadata shows every partition with a leader
        deadline = time.time() + 30
        while time.time() < deadline:
            md = admin.list_topics(topic, timeout=10).topics.get(topic)
            if (
                md
                and not md.error
                and len(md.partitions) == partitions
                and all(p.leader >= 0 for p in md.partitions.values())
            ):
                break
            time.sleep(0.2)
        self.topics.append(topic)
        return topic

    def delete_topics(self) -> None:
        if not self.topics:
            return
        with contextlib.suppress(Exception):
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": KAFKA})
            for f in admin.delete_topics(list(self.topics), operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    f.result(30)

    # -- measures --------------------------------------------------------------------------
    def kq_push(self) -> None:
        for size in (100, 1024):
            n = self.n(f"kq.push.{size}")
            ngq = self.n(f"gq.kq.push.{size}")
            size_label = f"{size} B" if size < 1000 else "1 KB"
            topics = {k: self.topic(f"push{k}{size}") for k in ("b1", "ball", "r1", "rall", "gq")}
            for rep in range(self.reps):
                for acks in ("all", "1"):
                    m = f"kq.push.{size}.acks{acks}"
                    label = f"kq push {size_label} acks={acks}"
                    tb, tr = topics[f"b{acks}"], topics[f"r{acks}"]
                    self.measure(
                        m,
                        "brokerq",
                        label,
                        partial(self.py, "kq_push_brokerq", n=n, size=size, topic=tb, acks=acks),
                        rep,
                    )
                    self.measure(
                        m,
                        "raw",
                        label,
                        partial(self.py, "kq_push_raw", n=n, size=size, topic=tr, acks=acks),
                        rep,
                    )
                self.measure(
                    f"kq.push.{size}.gq",
                    "go-queue",
                    f"kq push {size_label} (go-queue Pusher, acks=0)",
                    partial(
                        self.go, "kq-push", topic=topics["gq"], n=ngq, size=size, brokers=KAFKA
                    ),
                    rep,
                )

    def kq_consume(self) -> None:
        n = self.n("kq.consume")
        label = "kq consume no-op (8 processors)"
        t = self.topic("consume")
        self.progress.step(f"{label} — fill {n:,} messages")
        self.py("kq_push_raw", n=n, size=100, topic=t, acks="1")
        for rep in range(self.reps):  # a fresh group per repetition reads the topic again
            g = f"{RUN_ID}-{rep}"
            self.measure(
                "kq.consume",
                "brokerq",
                label,
                partial(self.py, "kq_consume_brokerq", n=n, topic=t, group=f"b-{g}"),
                rep,
            )
            self.measure(
                "kq.consume",
                "raw",
                label,
                partial(self.py, "kq_consume_raw", n=n, topic=t, group=f"r-{g}"),
                rep,
            )
            self.measure(
                "kq.consume",
                "go-queue",
                label,
                partial(
                    self.go,
                    "kq-consume",
                    topic=t,
                    group=f"g-{g}",
                    n=n,
                    brokers=KAFKA,
                    processors=8,
                    timeout="180s",
                ),
                rep,
            )

    def dq(self) -> None:
        n = self.n("dq.delay")
        plan = [
            (
                "brokerq",
                lambda tube: self.py("dq_delay_brokerq", n=n, size=100, tube=tube, delay=1.0),
                lambda tube: self.py("dq_consume_brokerq", n=n, tube=tube),
            ),
            (
                "raw",
                lambda tube: self.py("dq_delay_raw", n=n, size=100, tube=tube, delay=1.0),
                lambda tube: self.py("dq_consume_raw", n=n, tube=tube),
            ),
            (
                "go-queue",
                lambda tube: self.go(
                    "dq-delay", tube=tube, n=n, size=100, delay="1s", endpoints=",".join(BEANSTALKS)
                ),
                lambda tube: self.go(
                    "dq-consume",
                    tube=tube,
                    n=n,
                    endpoints=",".join(BEANSTALKS),
                    redis=REDIS,
                    timeout="180s",
                ),
            ),
        ]
        for rep in range(self.reps):
            for impl, put, consume in plan:
                tube = f"bench-dq-{impl}-{RUN_ID}-{rep}"
                try:
                    ok = self.measure(
                        "dq.delay", impl, "dq delay 100 B (3 nodes, min 2)", partial(put, tube), rep
                    )
                    if ok:
                        time.sleep(1.2)  # every job ready before the consumer starts
                        self.measure(
                            "dq.consume",
                            impl,
                            "dq consume e2e (Redis guard)",
                            partial(consume, tube),
                            rep,
                        )
                finally:
                    drain_tube(tube)

    def dq_at(self) -> None:
        n = self.n("dq.at")
        lead, spread = (2.0, 5.0) if not self.quick else (2.0, 3.0)
        label = f"dq at: lateness ({n} jobs over {spread:.0f} s)"
        for impl in ("brokerq", "go-queue"):
            tube = f"bench-at-{impl}-{RUN_ID}"
            try:
                if impl == "brokerq":
                    self.measure(
                        "dq.at",
                        impl,
                        label,
                        partial(self.py, "dq_at_brokerq", n=n, tube=tube, lead=lead, spread=spread),
                    )
                else:
                    self.measure(
                        "dq.at",
                        impl,
                        label,
                        partial(
                            self.go,
                            "dq-at",
                            tube=tube,
                            n=n,
                            lead=f"{lead}s",
                            spread=f"{spread}s",
                            endpoints=",".join(BEANSTALKS),
                            redis=REDIS,
                        ),
                    )
            finally:
                drain_tube(tube)

    def embedded(self) -> None:
        n = self.n("embedded")
        c = 8
        label = f"embedded sqlite e2e no-op ({c} workers; other = huey SqliteHuey)"
        for rep in range(self.reps):
            self._embedded_once(n, c, label, rep)

    def _embedded_once(self, n: int, c: int, label: str, rep: int) -> None:
        self.measure(
            "embedded",
            "brokerq",
            label,
            partial(self.py, "embedded_brokerq", _timeout=600, n=n, concurrency=c),
            rep,
        )
        self.measure(
            "embedded",
            "huey",
            label,
            partial(self.py, "embedded_huey", _timeout=600, n=n, concurrency=c),
            rep,
        )

    def rss(self) -> None:
        jobs = self.args.rss_jobs if self.args.rss_jobs is not None else self.n("rss")
        seconds = 20.0 if not self.quick else 8.0
        tube = f"bench-rss-{RUN_ID}"
        label = f"dq consumer RSS, {jobs:,} delayed jobs waiting"
        self.progress.step(f"{label} — loading")
        try:
            t0 = time.perf_counter()
            body = payload(100)
            with RawBeanstalk(BEANSTALKS[0], timeout=120) as b:
                loaded = b.put_many(
                    tube,
                    (b"%d:" % i + body for i in range(jobs)),
                    delay=3600,
                    window=5000,
                    progress=lambda k: self.progress.status(f"loaded {k:,} / {jobs:,}"),
                )
            load_s = time.perf_counter() - t0
            self.note(
                f"loaded {loaded:,} delayed jobs in {load_s:.1f} s ({loaded / load_s:,.0f}/s, pipelined)"
            )
            self.progress.step(f"{label} — sampling {seconds:.0f} s")
            for impl in ("brokerq", "go-queue"):
                r = self.measure(
                    "dq.rss", impl, label, partial(self._sample_rss, tube, seconds, impl)
                )
                if r is not None:
                    r["load_s"] = load_s
                    r["jobs"] = loaded
        finally:
            self.progress.step(f"{label} — deleting the jobs")
            t0 = time.perf_counter()
            deleted = drain_tube(tube)
            self.note(f"deleted {deleted:,} jobs in {time.perf_counter() - t0:.1f} s")

    def _sample_rss(self, tube: str, seconds: float, impl: str) -> dict[str, Any]:
        """RSS of a consumer process on ``tube`` (every job delayed), every 0.5 s."""
        spec = json.dumps(
            {"fn": "dq_idle_consumer", "kwargs": {"tube": tube, "seconds": seconds + 5}}
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        if impl == "brokerq":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", spec]
        else:  # go-queue's Consumer, told to wait for more jobs than there will be
            cmd = [
                str(GOQ),
                "dq-consume",
                f"-tube={tube}",
                "-n=1000000000",
                f"-timeout={seconds + 10:.0f}s",
                f"-endpoints={','.join(BEANSTALKS)}",
                f"-redis={REDIS}",
            ]
        p = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(REPO),
            env=env,
        )
        try:
            assert p.stdout is not None
            if impl == "brokerq":
                line = p.stdout.readline()
                if not line.startswith("READY"):
                    err = p.stderr.read() if p.stderr else ""
                    raise RuntimeError(f"consumer did not start: {line!r} {err[-800:]}")
            time.sleep(1.0)  # let it connect to every node and to Redis
            samples: list[tuple[float, float]] = []
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                samples.append((time.perf_counter() - t0, rss_mib(p.pid)))
                time.sleep(0.5)
            if impl != "brokerq":
                p.kill()
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        handled = 0
        for ln in out.splitlines():
            if ln.startswith("RESULT "):
                handled = json.loads(ln[7:]).get("handled", 0)
        vals = [v for _, v in samples]
        half = len(vals) // 2
        return {
            "rss_mib_start": vals[0],
            "rss_mib_end": vals[-1],
            "rss_mib_max": max(vals),
            "rss_mib_first_half_mean": statistics.mean(vals[:half] or vals),
            "rss_mib_second_half_mean": statistics.mean(vals[half:] or vals),
            "rss_growth_mib": vals[-1] - vals[0],
            "seconds": seconds,
            "samples": samples,
            "handled": handled,
        }


def last_line(text: str) -> str:
    """The line of an error that says what went wrong (a traceback's last line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    head = lines[0].split(":", 1)[0]
    return lines[0] if len(lines) == 1 else f"{head}: {lines[-1]}"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return float("nan")


# ====================================================================== machine facts
def _run(cmd: list[str], timeout: float = 10) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform()}
    with contextlib.suppress(OSError):
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                info["memory_gib"] = round(int(ln.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                info["cpu_model"] = ln.split(":", 1)[1].strip()
                break
    info["python"] = platform.python_version()
    info["go"] = _run(["go", "version"]).replace("go version ", "")
    for mod in ("confluent_kafka", "greenstalk", "redis", "huey"):
        with contextlib.suppress(Exception):
            m = __import__(mod)
            info[f"{mod}_version"] = (
                getattr(m, "__version__", "") or getattr(m, "version", lambda: "")()
            )
    with contextlib.suppress(Exception):
        import confluent_kafka

        info["librdkafka_version"] = confluent_kafka.libversion()[0]
    with contextlib.suppress(Exception), RawBeanstalk(BEANSTALKS[0], timeout=5) as b:
        info["beanstalkd"] = (b.stats().get("version") or "").strip('"')
    with contextlib.suppress(Exception):
        s = socket.create_connection(tuple_addr(REDIS), timeout=5)
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        data = s.recv(65536).decode(errors="replace")
        s.close()
        m = re.search(r"redis_version:(\S+)", data)
        info["redis"] = m.group(1) if m else None
    info["kafka"] = kafka_version()
    with contextlib.suppress(Exception):
        gomod = (HERE / "goqueue" / "go.mod").read_text()
        m = re.search(r"github.com/zeromicro/go-queue (\S+)", gomod)
        info["go_queue"] = m.group(1) if m else None
    commit = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    info["brokerq_commit"] = commit if re.fullmatch(r"[0-9a-f]{40}", commit or "") else None
    info["brokerq_dirty"] = bool(_run(["git", "-C", str(REPO), "status", "--porcelain"]))
    return info


def tuple_addr(a: str) -> tuple[str, int]:
    h, p = a.rsplit(":", 1)
    return h, int(p)


def kafka_version() -> str | None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in cmd or "kafka-server" in cmd:
            m = re.search(r"kafka(?:_[\d.]+)?-(\d+\.\d+\.\d+)", cmd)
            if m:
                return m.group(1)
    return os.environ.get("BROKERQ_KAFKA_VERSION")


# =========================================================================== reporting
TARGETS: dict[str, list[tuple[str, float]]] = {
    "kq.push.100.acksall": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.push.100.acks1": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.push.1024.acksall": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.push.1024.acks1": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.consume": [("go-queue", 1.0)],
    "dq.delay": [("go-queue", 1.0)],
    "dq.consume": [("go-queue", 1.0)],
    "embedded": [("huey", 1.5)],
}
ORDER = [
    "kq.push.100.acksall",
    "kq.push.100.acks1",
    "kq.push.1024.acksall",
    "kq.push.1024.acks1",
    "kq.consume",
    "dq.delay",
    "dq.consume",
    "dq.at",
    "embedded",
    "dq.rss",
]


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 100_000:
        return f"{v / 1000:,.0f} k/s"
    if v >= 10_000:
        return f"{v / 1000:,.1f} k/s"
    return f"{v:,.0f} /s"


def summarize(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for f in figures:
        by.setdefault(f["measure"], {})[f["impl"]] = f
    for m in ORDER:
        impls = by.get(m)
        if not impls:
            continue
        label = next(iter(impls.values()))["label"]
        b = impls.get("brokerq")
        row: dict[str, Any] = {"measure": m, "label": label, "checks": []}
        if m == "dq.at":

            def at(f: dict[str, Any] | None) -> str:
                if not f:
                    return "—"
                return (
                    f"p50 {f['lateness_ms_p50']:.0f} / p99 {f['lateness_ms_p99']:.0f} / "
                    f"max {f['lateness_ms_max']:.0f} ms, early {f['early']}"
                )

            row.update(brokerq=at(b), raw="", goqueue=at(impls.get("go-queue")))
            if b:
                ok = b["lateness_ms_p99"] <= 50 and b["early"] == 0
                row["checks"].append(
                    {
                        "target": "p99 <= 50 ms, 0 early",
                        "met": ok,
                        "value": f"p99 {b['lateness_ms_p99']:.1f} ms, early {b['early']}",
                    }
                )
            row["ratios"] = ""
        elif m == "dq.rss":

            def rss(f: dict[str, Any] | None) -> str:
                if not f:
                    return "—"
                return (
                    f"{f['rss_mib_start']:.1f} → {f['rss_mib_end']:.1f} MiB"
                    f" (max {f['rss_mib_max']:.1f})"
                )

            row.update(brokerq=rss(b), raw="", goqueue=rss(impls.get("go-queue")), ratios="")
            if b:
                growth = b["rss_mib_end"] - b["rss_mib_start"]
                ok = growth <= max(2.0, 0.05 * b["rss_mib_start"])
                row["checks"].append(
                    {
                        "target": "flat (growth <= max(2 MiB, 5%))",
                        "met": ok,
                        "value": f"{growth:+.1f} MiB over {b['seconds']:.0f} s",
                    }
                )
        else:
            other = impls.get("raw") or impls.get("huey")
            g = impls.get("go-queue")
            row["brokerq"] = fmt_rate(b.get("per_s")) if b else "—"
            row["raw"] = (
                (fmt_rate(other.get("per_s")) + (" (huey)" if other["impl"] == "huey" else ""))
                if other
                else "—"
            )
            row["goqueue"] = fmt_rate(g.get("per_s")) if g else "—"
            ratios = []
            for who, f in (("raw" if not impls.get("huey") else "huey", other), ("go-queue", g)):
                if b and f and f.get("per_s"):
                    r = b["per_s"] / f["per_s"]
                    ratios.append(f"{r:.2f}x {who}")
                    for tw, tv in TARGETS.get(m, []):
                        if tw == who:
                            row["checks"].append(
                                {"target": f">= {tv}x {who}", "met": r >= tv, "value": f"{r:.2f}x"}
                            )
            row["ratios"] = ", ".join(ratios)
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    t = Table(title="brokerq vs raw clients vs go-queue (same run, same servers)", show_lines=False)
    for col, just in (
        ("measure", "left"),
        ("brokerq", "right"),
        ("raw / other", "right"),
        ("go-queue", "right"),
        ("ratios", "left"),
        ("targets", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        checks = "; ".join(
            ("[green]met[/green] " if c["met"] else "[red]MISSED[/red] ") + c["target"]
            for c in r["checks"]
        )
        t.add_row(r["label"], r["brokerq"], r["raw"], r["goqueue"], r["ratios"], checks)
    console.print(t)


class Progress:
    """A rich progress bar over the steps, plus a status line."""

    def __init__(self, total: int, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.p = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.task = self.p.add_task("starting", total=total, status="")
        self._started = False
        self._steps = 0

    def __enter__(self) -> Progress:
        self.p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.update(self.task, completed=self.p.tasks[0].total, description="done", status="")
        self.p.stop()

    def step(self, text: str) -> None:
        if self._started:
            self.p.advance(self.task)
        self._started = True
        self.p.update(self.task, description=text, status="")
        self.p.console.log(text)

    def status(self, text: str) -> None:
        """A transient status next to the bar."""
        self.p.update(self.task, status=text)

    def log(self, text: str) -> None:
        """A line kept above the bar."""
        self.p.console.log(text)


STEPS = {"kq": 10, "kqc": 3, "dq": 6, "at": 2, "embedded": 2, "rss": 5}  # per repetition
REPEATED = {"kq", "kqc", "dq", "embedded"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="small N, one repetition (about 2 minutes)"
    )
    ap.add_argument(
        "--only", default="", help="comma list of: kq,kqc,dq,at,embedded,rss (default all)"
    )
    ap.add_argument(
        "--rss-jobs",
        type=int,
        default=None,
        help="delayed jobs for the RSS measure (default 1M, quick 100k)",
    )
    ap.add_argument(
        "--reps", type=int, default=3, help="repetitions of each rate, median kept (quick: 1)"
    )
    ap.add_argument("--out", default=str(RESULTS / "latest.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0

    from rich.console import Console

    console = Console(stderr=True)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(STEPS)
    unknown = set(only) - set(STEPS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; choose from {list(STEPS)}")
    started = time.time()
    reps = 1 if args.quick else max(1, args.reps)
    total = sum(STEPS[s] * (reps if s in REPEATED else 1) + (s == "kqc") for s in only)
    with Progress(total, console) as progress:
        run = Run(args, progress)
        steps = {
            "kq": run.kq_push,
            "kqc": run.kq_consume,
            "dq": run.dq,
            "at": run.dq_at,
            "embedded": run.embedded,
            "rss": run.rss,
        }
        try:
            for s in only:
                try:
                    steps[s]()
                except Exception as e:
                    run.errors.append(
                        {
                            "measure": s,
                            "impl": "*",
                            "error": f"{type(e).__name__}: {e}",
                            "trace": traceback.format_exc(),
                        }
                    )
                    progress.log(f"[red]{s} failed:[/red] {e}")
        finally:
            run.delete_topics()
            with contextlib.suppress(Exception):
                drop_redis_keys()
    run.finalize()
    rows = summarize(run.figures)
    out_console = Console(width=None if sys.stdout.isatty() else 160)
    render(rows, out_console)
    for e in run.errors:
        out_console.print(
            f"[red]error[/red] {e['measure']} / {e['impl']}: {last_line(e['error'])[:300]}"
        )
    result = {
        "run_id": RUN_ID,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "mode": "quick" if args.quick else "full",
        "only": only,
        "machine": machine(),
        "notes": [
            "go-queue kq Pusher as shipped: kafka-go writer with RequiredAcks=0 (acks=0), snappy, "
            "1 MiB / 1 s chunk executor; Push never reports a failed write.",
            "consume rates: first handled message to the N-th; put/push rates: first call to last ack.",
            "raw dq put/consume: greenstalk on one node, one round trip per command, no Redis guard.",
            "embedded: brokerq SqliteBroker synchronous=full vs huey SqliteHuey fsync=True, thread workers.",
            "the services are shared with other developers' test runs; figures are from one run.",
        ],
        "summary": rows,
        "figures": run.figures,
        "errors": run.errors,
        "log": run.log_lines,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    out_console.print(
        f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} "
        f"({result['duration_s']:.0f} s)"
    )
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
