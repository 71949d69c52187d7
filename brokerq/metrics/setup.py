"""``brokerq run``'s one entry point into the metrics package, importable without the extra.

``exporter_for(cfg, broker)`` is a do-nothing stand-in when the YAML has no ``metrics:``
section, so the CLI has a single code path; with one, it builds brokerq.metrics.exporter's
``Exporter`` (ConfigError naming the extra when prometheus-client is not installed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from brokerq.broker import Broker
from brokerq.errors import ConfigError
from brokerq.middleware import Middleware
from brokerq.supervisor import INDEX_ENV

if TYPE_CHECKING:
    from brokerq.config import WorkerConfig
    from brokerq.schedule.scheduler import FireHook


class Serving(Protocol):
    """An exporter as ``brokerq run`` sees it."""

    @property
    def middleware(self) -> Sequence[Middleware]: ...

    @property
    def on_fire(self) -> FireHook | None: ...

    def start(self, worker: Any = None) -> None: ...

    def close(self) -> None: ...


class NoExporter:
    """What ``brokerq run`` uses without a ``metrics:`` section: no middleware, no server."""

    @property
    def middleware(self) -> Sequence[Middleware]:
        return ()

    @property
    def on_fire(self) -> FireHook | None:
        return None

    def start(self, worker: Any = None) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def serving(exporter: Serving, worker: Any) -> Iterator[None]:
    """Serve while the block runs (the worker consumes); stop serving after it."""
    exporter.start(worker)
    try:
        yield
    finally:
        exporter.close()


def exporter_for(cfg: WorkerConfig, broker: Broker, process_index: int | None = None) -> Serving:
    """An ``Exporter`` for ``cfg.metrics``, or a ``NoExporter`` when the section is absent.

    With ``processes: N`` each supervised worker process (index 0..N-1, from the
    supervisor's ``BROKERQ_WORKER_INDEX`` unless given) listens on ``port + index``: one
    exporter per process, no shared multiprocess directory to go stale (a port of 0 stays
    0: any free port).
    """
    if cfg.metrics is None:
        return NoExporter()
    if process_index is None:
        process_index = _index_from_env()
    conf = cfg.metrics
    if process_index and conf.port:
        host = f"[{conf.host}]" if ":" in conf.host else conf.host
        conf = conf.model_copy(update={"listen": f"{host}:{conf.port + process_index}"})
    try:
        from brokerq.metrics.exporter import Exporter, queue_label
    except ImportError as e:
        raise ConfigError(
            f"metrics: needs the prometheus-client package ({e.name} is missing): "
            "pip install 'brokerq[metrics]'"
        ) from None
    return Exporter(conf, worker=cfg.name, queue=queue_label(cfg.broker_config), broker=broker)


def _index_from_env() -> int:
    raw = os.environ.get(INDEX_ENV, "0")
    try:
        return max(0, int(raw))
    except ValueError:
        raise ConfigError(f"{INDEX_ENV}={raw!r}: expected a worker index (0, 1, ...)") from None
