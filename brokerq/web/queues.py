"""The queues the dashboard shows: one per worker config, each owning its broker.

Every broker call goes through ``Queue.ask``: one call at a time per broker (its lock: the
broker's admin clients are not shared between threads at once), run on a thread of its own and
waited for ``timeout`` seconds at most (2 s by default), and its outcome is an ``Answer`` that
says what the page should print: a value, "not supported" (the backend raised NotSupported), or
an error line: the backend's error (refused, unreachable) or "slow" (no answer in time). A page
never crashes on a backend, and a hanging one costs a page at most ``timeout`` seconds (the call
that hangs keeps the lock until the driver gives up, so later calls to that broker say "slow"
once they waited ``timeout`` for it).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from brokerq import config as config_mod
from brokerq.broker import Broker, WorkerInfo
from brokerq.errors import BrokerqError, NotSupported

logger = logging.getLogger(__name__)

T = TypeVar("T")

KINDS = {"kafka": "kq", "beanstalk": "dq", "sqlite": "sqlite", "memory": "memory"}

CALL_TIMEOUT = 2.0
"""Seconds a page waits for one broker call (``WebSettings.call_timeout``)."""
SLOW = "slow"
"""First word of the error of a call that did not answer in time (the broker may be up but busy;
a refused connection is the backend's own error instead)."""


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A broker call's outcome: ``value`` when it worked, else ``unsupported`` or ``error``."""

    value: T | None = None
    unsupported: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.unsupported is None and self.error is None


@dataclass(slots=True)
class Card:
    """What the overview shows for one queue, as of ``taken_at`` (unix time)."""

    stats: Answer[dict[str, int]]
    paused: Answer[bool]
    workers: Answer[list[WorkerInfo]] = field(default_factory=Answer)
    taken_at: float = field(default_factory=time.time)

    @property
    def last_beat(self) -> float | None:
        """Unix time of the freshest heartbeat among the live workers."""
        beats = [w.last_beat for w in self.workers.value or []]
        return max(beats) if beats else None

    def get(self, name: str) -> int | None:
        return None if self.stats.value is None else self.stats.value.get(name)

    @property
    def lag(self) -> int | None:
        """Kafka lag: ``lag`` or the sum of ``lag:<partition>`` keys, else ``pending`` (for kq
        the messages the group has not committed)."""
        stats = self.stats.value
        if stats is None:
            return None
        parts = [v for k, v in stats.items() if k.startswith("lag:")]
        if "lag" in stats:
            return stats["lag"]
        return sum(parts) if parts else stats.get("pending")

    @property
    def oldest_age(self) -> int | None:
        """Seconds the oldest waiting job has waited, when the backend reports it."""
        for name in ("oldest_age", "oldest_age_seconds"):
            value = self.get(name)
            if value is not None:
                return value
        return None


class Queue:
    """One config's broker, its name in URLs (``slug``) and what it points at (``target``)."""

    def __init__(self, slug: str, path: str, cfg: config_mod.WorkerConfig, broker: Broker) -> None:
        self.slug = slug
        self.path = path
        self.config = cfg
        self.name = cfg.name
        self.section = cfg.section
        self.backend = cfg.broker_name
        self.kind = KINDS.get(cfg.broker_name, cfg.broker_name)
        self.broker = broker
        self.target, self.detail = _describe(cfg)
        self._lock = threading.Lock()
        self.timeout = CALL_TIMEOUT

    def ask(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Answer[T]:
        """Call ``fn`` under this queue's lock on a thread of its own, waiting ``timeout``
        seconds at most (None: ``self.timeout``); NotSupported, BrokerqError and a call that
        does not answer in time become an Answer."""
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        if not self._lock.acquire(timeout=wait):
            return Answer(error=_slow(what, wait))
        box: list[Answer[T]] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append(self._call(what, fn, args, kwargs))
            finally:
                self._lock.release()
                done.set()

        try:
            threading.Thread(target=run, name=f"brokerq-web-{self.slug}", daemon=True).start()
        except BaseException:
            self._lock.release()
            raise
        if done.wait(max(0.0, deadline - time.monotonic())) and box:
            return box[0]
        logger.warning("%s: %s: no answer within %.1fs", self.slug, what, wait)
        return Answer(error=_slow(what, wait))

    def _call(
        self, what: str, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Answer[T]:
        try:
            return Answer(value=fn(*args, **kwargs))
        except NotSupported as e:
            return Answer(unsupported=str(e) or f"{what}: not supported by {self.kind}")
        except BrokerqError as e:
            logger.warning("%s: %s: %s", self.slug, what, e)
            return Answer(error=f"{what}: {e}")
        except Exception as e:  # a backend bug must not take the page down
            logger.exception("%s: %s failed", self.slug, what)
            return Answer(error=f"{what}: {type(e).__name__}: {e}")

    @property
    def can_pause(self) -> bool:
        """True when the backend says it can pause (``capabilities.pause``)."""
        return _can_pause(self.broker)

    @property
    def can_revoke(self) -> bool:
        """True when the backend has delayed jobs (``capabilities.delay``): revoke applies."""
        capabilities = getattr(type(self.broker), "capabilities", None)
        return bool(getattr(capabilities, "delay", False))

    def card(self) -> Card:
        """Counts, the paused flag and live workers, read now; when the counts do not come
        in time the rest is not asked (the broker is slow: one timeout, not three)."""
        stats = self.ask("stats", self.broker.stats)
        if is_slow(stats):
            return Card(stats=stats, paused=Answer(error=stats.error), workers=Answer())
        paused = self.ask("paused", _is_paused, self.broker)
        workers = self.ask("workers", self.broker.workers)
        return Card(stats=stats, paused=paused, workers=workers)

    def close(self) -> None:
        held = self._lock.acquire(timeout=self.timeout)
        if not held:
            logger.warning("%s: closing while a call has not answered", self.slug)
        try:
            self.broker.close()
        except Exception:
            logger.exception("%s: close failed", self.slug)
        finally:
            if held:
                self._lock.release()


def _slow(what: str, wait: float) -> str:
    return f"{SLOW}: {what}: no answer within {wait:g} s yet"


def is_slow(answer: Answer[Any]) -> bool:
    """True when ``answer`` is a call that did not answer in time (not a broker error)."""
    return bool(answer.error and answer.error.startswith(f"{SLOW}: "))


def _can_pause(broker: Broker) -> bool:
    capabilities = getattr(type(broker), "capabilities", None)
    return bool(getattr(capabilities, "pause", False))


def _is_paused(broker: Broker) -> bool:
    if not _can_pause(broker):
        raise NotSupported(f"the {broker.name} broker cannot pause")
    return bool(broker.is_paused())


def _describe(cfg: config_mod.WorkerConfig) -> tuple[str, str]:
    """``(queue/topic/tube, one line of where it lives)`` from the broker's config model."""
    model = cfg.broker_config
    if cfg.broker_name == "kafka":
        brokers = ",".join(getattr(model, "brokers", []) or [])
        return str(
            getattr(model, "topic", "?")
        ), f"group {getattr(model, 'group', '?')} @ {brokers}"
    if cfg.broker_name == "beanstalk":
        nodes = list(getattr(model, "beanstalks", []) or [])
        tube = str(getattr(nodes[0], "tube", "?")) if nodes else "?"
        endpoints = ", ".join(str(getattr(n, "endpoint", "?")) for n in nodes)
        return tube, f"{len(nodes)} node(s), each job counted once: {endpoints}"
    if cfg.broker_name in ("sqlite", "memory"):
        where = (
            "in-process memory" if cfg.broker_name == "memory" else str(getattr(model, "path", ""))
        )
        return str(getattr(model, "queue", "default")), where
    return str(getattr(model, "queue", getattr(model, "topic", cfg.name))), cfg.broker_name


_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    return _SLUG.sub("-", name.lower()).strip("-") or "queue"


def open_queues(paths: Sequence[str]) -> list[Queue]:
    """Load every config and build (not connect) its broker; ConfigError names the bad file.

    Slugs come from the configs' ``name`` and are made unique with ``-2``, ``-3``...
    """
    queues: list[Queue] = []
    seen: set[str] = set()
    try:
        for path in paths:
            cfg = config_mod.load(path)
            slug = base = slugify(cfg.name)
            n = 1
            while slug in seen:
                n += 1
                slug = f"{base}-{n}"
            seen.add(slug)
            queues.append(Queue(slug, path, cfg, cfg.build_broker()))
    except BaseException:
        for q in queues:
            q.close()
        raise
    return queues
