"""Replica copies of one job reserved by one consumer, kept beside the copy that runs.

Every job lives on several nodes with the same bytes. The first copy a consumer reserves
registers the job here (tentatively, before Redis answers); copies reserved after it, from
any node, join it instead of asking Redis again (the claim would look taken anyway), stay
reserved (touched by their node threads) and follow the job's fate once that is recorded in
Redis: deleted after the done mark, released with the retry delay, deleted when dead.

Thread-safe: node threads register and join; worker threads settle.
"""

from __future__ import annotations

import threading

from brokerq_beanstalk._node import Handle


class Replicas:
    """Jobs registered by this consumer (by id and by body) and their extra copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: dict[str, list[Handle]] = {}  # job id → its other copies held here
        self._by_body: dict[bytes, str] = {}  # body of a registered job → its id (no decode)
        self._body_of: dict[str, bytes] = {}  # claim token → body key in _by_body

    def __len__(self) -> int:
        return len(self._copies)

    def join_body(self, body: bytes, copy: Handle) -> bool:
        """Keep ``copy`` beside a registered job with the same bytes; False when none."""
        job_id = self._by_body.get(body)  # a racy read is fine: checked again under the lock
        if job_id is None:
            return False
        return self.join(job_id, copy)

    def join(self, job_id: str, copy: Handle) -> bool:
        """Keep ``copy`` beside the registered job ``job_id``; False when it is not registered."""
        with self._lock:
            copies = self._copies.get(job_id)
            if copies is None:
                return False
            copies.append(copy)
            return True

    def register(self, job_id: str, body: bytes, token: str) -> bool:
        """Register the job whose copy is about to be claimed with ``token``; False when it
        is registered already (join the copy instead)."""
        with self._lock:
            if job_id in self._copies:
                return False
            self._copies[job_id] = []
            self._by_body[body] = job_id
            self._body_of[token] = body
            return True

    def drop(self, job_id: str, token: str) -> list[Handle]:
        """Unregister the job claimed with ``token``; return its other copies (once: a
        second call returns [])."""
        with self._lock:
            body = self._body_of.pop(token, None)
            if body is None:
                return []
            self._by_body.pop(body, None)
            return self._copies.pop(job_id, None) or []
