"""dq worker heartbeats: one Redis key per worker process, written with a TTL.

    <prefix>{workers:<tube>}:<host>:<pid>:<started>   JSON WorkerInfo   SET EX ttl

Every key of a tube shares one hash tag, so on Redis Cluster they live in one slot; listing
scans that pattern (a handful of keys: one per worker process).
"""

from __future__ import annotations

import math
from typing import Any

from redis.exceptions import RedisError

from brokerq.broker import WorkerInfo
from brokerq.errors import ConnectionFailed
from brokerq.heartbeat import by_name, from_json, to_json


def _pattern(prefix: str, tube: str) -> str:
    return f"{prefix}{{workers:{tube}}}:"


def beat(client: Any, prefix: str, tube: str, info: WorkerInfo, ttl: float) -> None:
    """Write ``info`` under the worker's key for ``ttl`` seconds (ConnectionFailed on errors)."""
    key = f"{_pattern(prefix, tube)}{info.host}:{info.pid}:{info.started:.3f}"
    try:
        client.set(key, to_json(info), ex=max(1, math.ceil(ttl)))
    except RedisError as e:
        raise ConnectionFailed(f"redis: worker heartbeat: {e}") from e


def live(client: Any, prefix: str, tube: str) -> list[WorkerInfo]:
    """The workers whose key has not expired, by name then pid."""
    out: list[WorkerInfo] = []
    try:
        keys = list(client.scan_iter(match=f"{_pattern(prefix, tube)}*", count=100))
        values = [client.get(k) for k in keys]
    except RedisError as e:
        raise ConnectionFailed(f"redis: workers: {e}") from e
    for raw in values:
        info = None if raw is None else from_json(raw)  # None: expired between scan and get
        if info is not None:
            out.append(info)
    return by_name(out)
