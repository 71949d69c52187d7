"""Find broker classes by name through the ``brokerq.brokers`` entry-point group.

A third-party backend registers itself the same way ours do, in its own pyproject:
``[project.entry-points."brokerq.brokers"] mybroker = "mypkg.broker:MyBroker"``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from brokerq.broker import Broker
from brokerq.errors import ConfigError

GROUP = "brokerq.brokers"

# Used when brokerq runs from a source tree that was never installed (no entry points yet).
_BUILTIN = {
    "memory": "brokerq.embedded.memory:MemoryBroker",
    "sqlite": "brokerq.embedded.sqlite:SqliteBroker",
    "kafka": "brokerq_kafka.broker:KafkaBroker",
    "beanstalk": "brokerq_beanstalk.broker:BeanstalkBroker",
}

_EXTRAS = {"kafka": "kafka", "beanstalk": "beanstalk"}


def available() -> list[str]:
    """Names of every registered broker."""
    return sorted({ep.name for ep in entry_points(group=GROUP)} | set(_BUILTIN))


def broker_class(name: str) -> type[Broker]:
    """The Broker class registered under ``name``; ConfigError if unknown or not installed."""
    target = next((ep.value for ep in entry_points(group=GROUP) if ep.name == name), None)
    target = target or _BUILTIN.get(name)
    if target is None:
        raise ConfigError(f"unknown broker {name!r}; known: {', '.join(available())}")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        hint = f" (pip install 'brokerq[{_EXTRAS[name]}]')" if name in _EXTRAS else ""
        raise ConfigError(f"broker {name!r} cannot be loaded: {e}{hint}") from e
    if not (isinstance(cls, type) and issubclass(cls, Broker)):
        raise ConfigError(f"broker {name!r} ({target}) is not a brokerq.broker.Broker")
    return cls
