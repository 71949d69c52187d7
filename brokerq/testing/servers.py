"""The local services (3 beanstalkd, Redis, Kafka), their probes, and clean-up of test names.

Used by the test fixtures (tests/services.py), the benchmark (bench/) and ``scripts/services``
(which runs this file directly: ``python brokerq/testing/servers.py probe KIND PORT [TIMEOUT]``
exits 0 when the service answers). Only the standard library is imported at module level;
confluent_kafka and redis are imported inside the functions that need them.

Where the services are: ``scripts/services up`` starts them on 127.0.0.1; the environment
variables ``BROKERQ_BEANSTALKD_ENDPOINTS`` (comma separated ``host:port``),
``BROKERQ_REDIS_URL`` and ``BROKERQ_KAFKA_BOOTSTRAP`` point elsewhere (e.g. Docker ports).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlparse

BEANSTALKD_ENDPOINTS = ("127.0.0.1:11300", "127.0.0.1:11301", "127.0.0.1:11302")
REDIS_URL = "redis://127.0.0.1:6379/0"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"


# --------------------------------------------------------------------------- where


def beanstalkd_endpoints() -> list[str]:
    """The beanstalkd nodes (``host:port``): ``BROKERQ_BEANSTALKD_ENDPOINTS`` or the three local ones."""
    env = os.environ.get("BROKERQ_BEANSTALKD_ENDPOINTS", "")
    given = [e.strip() for e in env.split(",") if e.strip()]
    return given or list(BEANSTALKD_ENDPOINTS)


def redis_url() -> str:
    """The Redis URL: ``BROKERQ_REDIS_URL`` or the local one (database 0)."""
    return os.environ.get("BROKERQ_REDIS_URL") or REDIS_URL


def kafka_bootstrap() -> str:
    """Kafka's bootstrap servers: ``BROKERQ_KAFKA_BOOTSTRAP`` or the local broker."""
    return os.environ.get("BROKERQ_KAFKA_BOOTSTRAP") or KAFKA_BOOTSTRAP


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; an empty host is 127.0.0.1. Raises ValueError."""
    host, sep, port = endpoint.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid endpoint {endpoint!r}: expected 'host:port'")
    return host.strip("[]") or "127.0.0.1", int(port)


def redis_address(url: str) -> tuple[str, int]:
    """``redis://host:port/db`` → ``(host, port)``; defaults 127.0.0.1 and 6379."""
    u = urlparse(url)
    return u.hostname or "127.0.0.1", u.port or 6379


# --------------------------------------------------------------------------- probes


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def _kafka_call(sock: socket.socket, corr: int, api: int, version: int, body: bytes) -> bytes:
    """One Kafka request (header v1, client id) and its response body after the correlation id."""
    client = b"brokerq-testing"
    msg = struct.pack(">hhih", api, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    resp = _recv_exact(sock, size)
    if struct.unpack(">i", resp[:4])[0] != corr:
        raise ValueError("kafka: bad correlation id")
    return resp[4:]


def _kafka_ready(sock: socket.socket, brokers_needed: int = 1) -> bool:
    """ApiVersions v0, then Metadata (a v4..v7 version the broker supports): a broker registered.

    Source: the Kafka protocol guide (ApiVersions key 18, Metadata key 3).
    """
    r = _kafka_call(sock, 1, 18, 0, b"")
    err, n = struct.unpack(">hi", r[:6])
    if err != 0:
        return False
    ranges = {}
    for i in range(n):
        key, lo, hi = struct.unpack(">hhh", r[6 + 6 * i : 12 + 6 * i])
        ranges[key] = (lo, hi)
    lo, hi = ranges.get(3, (0, -1))
    usable = [v for v in range(4, 8) if lo <= v <= hi]
    if not usable:
        return False
    r = _kafka_call(sock, 2, 3, usable[-1], struct.pack(">ib", 0, 0))  # no topics, no auto-create
    _throttle, brokers = struct.unpack(">ii", r[:8])
    return bool(brokers >= brokers_needed)


KINDS = ("beanstalkd", "redis", "kafka", "sentinel", "redis-tls", "kafka3")


def probe(kind: str, host: str, port: int, timeout: float = 2.0) -> bool:
    """True iff a ``kind`` service answers at host:port.

    A protocol round trip, not only an open port: beanstalkd ``stats``, Redis and Sentinel
    ``PING``, and for Kafka ApiVersions plus a Metadata request that lists at least one broker
    (``kafka3``: three, the cluster topology). ``redis-tls``: a TLS handshake verified with the
    CA in ``$BROKERQ_PROBE_CA`` (host name not checked), then PING answered by PONG or NOAUTH.
    Raises ValueError for an unknown ``kind``; any network or TLS error is False.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown service kind {kind!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            if kind == "beanstalkd":
                s.sendall(b"stats\r\n")
                return _recv_exact(s, 3) == b"OK "
            if kind in ("redis", "sentinel"):
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return _recv_exact(s, 5) == b"+PONG"
            if kind == "redis-tls":
                ctx = ssl.create_default_context(cafile=os.environ.get("BROKERQ_PROBE_CA"))
                ctx.check_hostname = False
                with ctx.wrap_socket(s) as t:
                    t.sendall(b"*1\r\n$4\r\nPING\r\n")
                    return _recv_exact(t, 7) in (b"+PONG\r\n", b"-NOAUTH")
            return _kafka_ready(s, 3 if kind == "kafka3" else 1)
    except (OSError, EOFError, ValueError, struct.error):  # ssl.SSLError is an OSError
        return False


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True iff something accepts a TCP connection at host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- Kafka topics


def create_topic(bootstrap: str, name: str, partitions: int = 4, timeout: float = 30.0) -> None:
    """Create ``name`` (replication 1) and wait until every partition has a leader.

    Raises the admin client's KafkaException when creation fails, TimeoutError when the
    leaders are not there after ``timeout`` seconds.
    """
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:  # producers must not race topic creation
        md = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"kafka topic {name} has no leaders after {timeout:.0f}s")
        time.sleep(0.1)


def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete the topics, best effort (a test may have killed the broker): errors are ignored."""
    names = list(names)
    if not names:
        return
    from confluent_kafka.admin import AdminClient

    with contextlib.suppress(Exception):
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.delete_topics(names, operation_timeout=timeout).values():
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)


# --------------------------------------------------------------------------- beanstalkd tubes


class RawBeanstalk:
    """A minimal pipelined beanstalkd client for bulk load, stats and clean-up.

    greenstalk does one round trip per command; this one writes a window of commands and then
    reads their replies, so loading or draining 100,000 jobs takes seconds. Protocol:
    beanstalkd's doc/protocol.txt. Raises OSError / ConnectionError on network failures and
    RuntimeError on an unexpected reply.
    """

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(split_endpoint(endpoint), timeout=timeout)
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

    def cmd(self, line: str, expect: bytes = b"") -> bytes:
        """Send one command line and return its reply line (RuntimeError unless it starts with ``expect``)."""
        self.sock.sendall(line.encode() + b"\r\n")
        reply = self._line()
        if not reply.startswith(expect):
            raise RuntimeError(f"beanstalkd {line!r}: {reply!r}")
        return reply

    def _yaml(self, line: str) -> dict[str, str]:
        head = self.cmd(line)
        if not head.startswith(b"OK "):
            return {}
        body = self.rf.read(int(head.split()[1]) + 2).decode()
        pairs = (ln.split(": ", 1) for ln in body.splitlines() if ": " in ln)
        return {k.strip(): v.strip() for k, v in pairs}

    def stats(self) -> dict[str, str]:
        """The server's ``stats`` (e.g. ``version``)."""
        return self._yaml("stats")

    def stats_tube(self, tube: str) -> dict[str, str]:
        """``stats-tube``; empty when the tube does not exist."""
        return self._yaml(f"stats-tube {tube}")

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
        """Put every body into ``tube``, ``window`` commands per round trip; return the count."""
        self.cmd(f"use {tube}", b"USING")
        sent = 0
        chunk: list[bytes] = []

        def flush() -> None:
            nonlocal sent
            self.sock.sendall(b"".join(chunk))
            for _ in chunk:
                reply = self._line()
                if not reply.startswith(b"INSERTED"):
                    raise RuntimeError(f"beanstalkd put: {reply!r}")
            sent += len(chunk)
            chunk.clear()
            if progress:
                progress(sent)

        for body in bodies:
            chunk.append(b"put %d %d %d %d\r\n%s\r\n" % (pri, delay, ttr, len(body), body))
            if len(chunk) >= window:
                flush()
        if chunk:
            flush()
        return sent

    def drain(self, tube: str, window: int = 2000, timeout: float = 300.0) -> int:
        """Delete every ready, delayed and buried job of ``tube`` on this node; return the count.

        Jobs reserved by another client are waited for until ``timeout`` seconds, then left.
        """
        self.cmd(f"use {tube}", b"USING")
        self.cmd(f"watch {tube}", b"WATCHING")
        if tube != "default":
            self.cmd("ignore default")
        deleted = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.stats_tube(tube)
            waiting = sum(
                int(st.get(k, 0))
                for k in ("current-jobs-ready", "current-jobs-delayed", "current-jobs-buried")
            )
            if waiting == 0:
                return deleted
            if int(st.get("current-jobs-ready", 0)) == 0:
                self.cmd(f"kick {waiting}")  # buried first, else delayed
            self.sock.sendall(b"reserve-with-timeout 0\r\n" * window)
            ids = []
            for _ in range(window):
                reply = self._line()
                if reply.startswith(b"RESERVED"):
                    _, jid, nbytes = reply.split()
                    self.rf.read(int(nbytes) + 2)
                    ids.append(int(jid))
            if ids:
                self.sock.sendall(b"".join(b"delete %d\r\n" % j for j in ids))
                for _ in ids:
                    self._line()
                deleted += len(ids)
            else:
                time.sleep(0.05)  # reserved elsewhere: wait for their release or deletion
        return deleted


def drain_tube(endpoints: Iterable[str], tube: str, timeout: float = 300.0) -> int:
    """Delete ``tube``'s jobs on every node, best effort (a node that is down is skipped)."""
    total = 0
    for endpoint in endpoints:
        with contextlib.suppress(OSError, ConnectionError), RawBeanstalk(endpoint) as b:
            total += b.drain(tube, timeout=timeout)
    return total


# --------------------------------------------------------------------------- Redis keys


def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (SCAN, 500 per DEL); return the count.

    Raises redis.RedisError when Redis does not answer.
    """
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()
    return len(keys)


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = math.ceil(q * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


def _main(argv: list[str]) -> int:
    """``probe KIND PORT [TIMEOUT]`` on 127.0.0.1: exit 0 when it answers, 1 when not, 2 on misuse."""
    if len(argv) not in (3, 4) or argv[0] != "probe":
        return 2
    timeout = float(argv[3]) if len(argv) == 4 else 2.0
    return 0 if probe(argv[1], "127.0.0.1", int(argv[2]), timeout) else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
