"""Find broker classes through the ``brokerq.brokers`` entry-point group.

A third-party backend registers itself the same way ours do, in its own pyproject:
``[project.entry-points."brokerq.brokers"] mybroker = "mypkg.broker:MyBroker"``. Its class
declares the YAML ``section`` that selects it (ours: ``kq``, ``dq``, ``embedded``), and the
``brokerq.sections`` group maps each section to its brokers (``mysection = "mybroker"``);
any broker can also be picked by name with ``broker: {type: NAME, ...}``.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from brokerq.broker import Broker
from brokerq.errors import ConfigError

GROUP = "brokerq.brokers"


def available() -> list[str]:
    """Names of every registered broker."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def broker_class(name: str) -> type[Broker]:
    """The Broker class registered under ``name``; ConfigError if unknown or not installed."""
    target = next((ep.value for ep in entry_points(group=GROUP) if ep.name == name), None)
    if target is None:
        known = ", ".join(available()) or "none (is brokerq installed? pip install -e .)"
        raise ConfigError(f"unknown broker {name!r}; known: {known}")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        top = module_name.split(".")[0]
        hint = f" (pip install 'brokerq[{name}]')" if top != "brokerq" else ""
        raise ConfigError(f"broker {name!r} cannot be loaded: {e}{hint}") from e
    if not (isinstance(cls, type) and issubclass(cls, Broker)):
        raise ConfigError(f"broker {name!r} ({target}) is not a brokerq.broker.Broker")
    return cls


SECTIONS_GROUP = "brokerq.sections"


@functools.lru_cache(maxsize=1)
def sections() -> dict[str, tuple[str, ...]]:
    """YAML section name -> names of the brokers it selects, the default first.

    Read from the ``brokerq.sections`` entry points without importing any backend, so a
    CLI call stays fast: ``kq = "pkg.mod:KafkaBroker"`` names a section's default broker,
    ``"embedded.memory" = ...`` another broker of the ``embedded`` section; each class path
    is matched to its name in the ``brokerq.brokers`` group. ``broker`` (pick any broker by
    ``type``) is always there.
    """
    names = {ep.value: ep.name for ep in entry_points(group=GROUP)}
    found: dict[str, list[tuple[bool, str]]] = {}
    for ep in entry_points(group=SECTIONS_GROUP):
        section, dot, _ = ep.name.partition(".")
        name = names.get(ep.value)
        if name is not None and section != "broker":
            found.setdefault(section, []).append((bool(dot), name))
    out = {s: tuple(n for _, n in sorted(v)) for s, v in found.items()}
    out["broker"] = ()
    return out
