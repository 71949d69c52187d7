"""A config's schedules as a Scheduler: the YAML ``schedules:`` plus ``schedules_from``.

``schedules_from: module:function`` names a callable with no arguments that returns schedules
(``brokerq.Schedule`` objects or mappings of the same keys as a YAML entry), for example read
from a database (asynq's PeriodicTaskManager). The scheduler calls it at start and every
``sync_interval``; what it adds, changes or removes takes effect then, without a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from brokerq.errors import ConfigError
from brokerq.handler import import_handler
from brokerq.schedule.scheduler import FireHook, Scheduler
from brokerq.schedule.spec import Schedule

if TYPE_CHECKING:
    from brokerq.broker import Broker
    from brokerq.config import WorkerConfig


def load_provider(spec: str) -> Callable[[], list[Schedule]]:
    """The ``schedules_from`` callable, wrapped to validate what it returns.

    ConfigError when it cannot be imported; each call raises ValueError (a pydantic
    ValidationError included) when an entry is not a valid schedule.
    """
    try:
        fn = import_handler(spec)
    except ConfigError as e:
        raise ConfigError(f"schedules_from: {str(e).removeprefix('handler ')}") from None

    def provide() -> list[Schedule]:
        got = fn()
        if not isinstance(got, Iterable) or isinstance(got, (str, bytes, Mapping)):
            raise ValueError(f"schedules_from {spec}: expected a list of schedules")
        return [as_schedule(item) for item in got]

    return provide


def as_schedule(item: Any) -> Schedule:
    if isinstance(item, Schedule):
        return item
    if isinstance(item, Mapping):
        return Schedule.model_validate(dict(item))
    raise ValueError(f"expected a brokerq.Schedule or a mapping, got {type(item).__name__}")


def scheduler_for(
    config: WorkerConfig, broker: Broker, on_fire: FireHook | None = None
) -> Scheduler:
    """The Scheduler of a loaded config: namespace = the config's ``name``; ``on_fire``
    hears of every tick (brokerq.schedule.scheduler.FireHook; metrics)."""
    provider = load_provider(config.schedules_from) if config.schedules_from else None
    return Scheduler(
        broker,
        config.schedules,
        namespace=config.name,
        provider=provider,
        sync_interval=config.sync_interval,
        on_fire=on_fire,
    )


def has_schedules(config: WorkerConfig) -> bool:
    return bool(config.schedules) or config.schedules_from is not None
