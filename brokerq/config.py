"""Worker config: one YAML file describes one consumer process.

``load(path)`` reads YAML, expands ``${VAR}`` / ``${VAR:-default}`` in string values, and
validates with pydantic. Every error names the file, the key path and the line::

    configs/orders.yaml:7: kq.offset: Input should be 'first' or 'last'

Exactly one broker section picks the backend. Sections come from the registered brokers
(brokerq.registry.sections: each Broker class declares its ``section``): ours are ``kq:``
(Kafka), ``dq:`` (beanstalkd) and ``embedded:`` (sqlite, or memory with ``backend: memory``);
``broker: {type: NAME, ...}`` picks any registered broker by name. The section is validated
by that broker's own model and describes only the broker: worker settings (concurrency,
prefetch, retry, time_limit, shutdown_timeout) live at the top level.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from brokerq.batch import BatchConfig, BatchHandler, batch_item_type
from brokerq.broker import Broker
from brokerq.duration import Count, Duration, parse_duration
from brokerq.errors import ConfigError
from brokerq.handler import Handler, import_handler
from brokerq.metrics.config import MetricsConf
from brokerq.ratelimit import RateLimitConfig, RateLimits
from brokerq.registry import broker_class, sections
from brokerq.retry import RetryPolicy
from brokerq.routing import Router
from brokerq.schedule.spec import Schedule

logger = logging.getLogger(__name__)

Loc = tuple[str | int, ...]


def _limit(value: object) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("time limit must be positive (or none)")
    return seconds


TimeLimit = Annotated[float | None, BeforeValidator(_limit)]
"""Seconds, a human duration, or ``none`` for no limit."""


class WorkerConfig(BaseModel):
    """The top level of a worker YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str = "brokerq"
    handler: str | None = Field(
        default=None, description="module:function that handles each message (or untyped ones)"
    )
    handlers: dict[str, str] = Field(
        default_factory=dict, description="job type -> module:function; '*' for any other type"
    )
    concurrency: Count | None = Field(default=None, ge=1, description="parallel handlers")
    prefetch: Count | None = Field(
        default=None,
        ge=1,
        description="messages held beyond those running (default 2x concurrency)",
    )
    retry: RetryPolicy | None = None
    time_limit: TimeLimit = Field(default=30 * 60.0, description="per handling; none: no limit")
    time_limit_grace: Duration = 5.0
    shutdown_timeout: Duration = 30.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    middleware: list[str] = Field(default_factory=list, description="module:Class, in order")
    schedules: list[Schedule] = Field(
        default_factory=list, description="periodic jobs fired into this broker"
    )
    schedules_from: str | None = Field(
        default=None, description="module:function returning more schedules (re-read live)"
    )
    sync_interval: Duration = Field(
        default=60.0, gt=0, description="how often schedules_from is re-read"
    )
    rate_limit: RateLimitConfig | None = None
    batch: BatchConfig | None = Field(
        default=None, description="batch handlers: {max_size, max_wait}"
    )
    processes: Count = Field(default=1, ge=1, le=64, description="worker processes (supervised)")
    metrics: MetricsConf | None = Field(
        default=None, description="Prometheus exporter and health endpoints (brokerq.metrics)"
    )

    @model_validator(mode="after")
    def _some_handler(self) -> WorkerConfig:
        if self.handler is None and not self.handlers:
            raise ValueError("a handler is required: set handler: or a handlers: map")
        return self

    def build_handler(self) -> Handler | Router | BatchHandler:
        """The handler (a router by job type, or a batch handler) this config names; every
        handler is imported now, so a missing one is a ConfigError at start-up, not a failure
        per message."""
        if self.handlers:
            if self.batch is not None:
                raise ConfigError("batch: works with one handler:, not with a handlers: map")
            return Router(self.handlers, default=self.handler)
        assert self.handler is not None
        fn = import_handler(self.handler)
        if self.batch is not None or batch_item_type(fn) is not None:
            return BatchHandler(fn, self.batch)
        return Handler(fn)

    _section: str = PrivateAttr(default="")
    _broker_name: str = PrivateAttr(default="")
    _broker_config: BaseModel | None = PrivateAttr(default=None)

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, value: list[Schedule]) -> list[Schedule]:
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schedule name {dupes[0]!r} is used twice")
        return value

    @property
    def section(self) -> str:
        """The YAML key of the broker section (kq, dq, embedded, broker, ...)."""
        return self._section

    @property
    def broker_name(self) -> str:
        return self._broker_name

    @property
    def broker_config(self) -> BaseModel:
        assert self._broker_config is not None, "config not resolved; use brokerq.config.load"
        return self._broker_config

    def build_broker(self) -> Broker:
        """Construct the configured broker (does not connect yet)."""
        return broker_class(self.broker_name).from_config(self.broker_config)

    def worker_options(self, broker: Broker) -> dict[str, Any]:
        """Keyword arguments for brokerq.worker.Worker. Settings still written in the broker
        section (deprecated, accepted for one release) apply unless the top level sets them."""
        options: dict[str, Any] = {}
        for key, value in broker.worker_options().items():
            logger.warning(
                "%s: worker settings in the broker section are deprecated: set %s: at the "
                "top level of the config instead",
                self.section,
                key,
            )
            options[key] = value
        options["shutdown_timeout"] = self.shutdown_timeout
        options["time_limit"] = self.time_limit
        options["time_limit_grace"] = self.time_limit_grace
        for key in ("concurrency", "prefetch", "retry"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if broker.capabilities.pause:
            options["paused"] = broker.is_paused
        if self.rate_limit is not None:
            options["rate_limits"] = RateLimits(
                broker.rate_limiter(), self.rate_limit, broker.queue_name
            )
        return options


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the
    last silently, so a typo'd duplicate would quietly change the config)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} written twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path: str | os.PathLike[str]) -> WorkerConfig:
    """Read and validate a worker YAML file; raise ConfigError naming file, key and line."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from e
    return loads(text, str(p))


def loads(text: str, source: str = "<config>") -> WorkerConfig:
    """Like ``load`` for YAML already in memory; ``source`` names it in errors."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
        lines = _line_map(yaml.compose(text))
    except yaml.YAMLError as e:
        error: yaml.YAMLError = e
        hidden = None
        try:
            hidden = _parse_with_vars_hidden(text)
        except yaml.YAMLError as other:  # malformed for another reason: report that
            error = other
        if hidden is None:
            mark = getattr(error, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = getattr(error, "problem", None) or str(error)
            raise ConfigError(f"{where}: malformed YAML: {problem}") from error
        data, lines = hidden
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    data = _interpolate(data, (), lines, source)
    known = sections()
    present = [k for k in data if k in known]
    if len(present) != 1:
        where = f"{source}:{_line(lines, (present[1],))}" if len(present) > 1 else source
        raise ConfigError(
            f"{where}: exactly one broker section of "
            f"{', '.join([*sorted(set(known) - {'broker'}), 'broker'])} is required "
            f"(found: {', '.join(present) or 'none'})"
        )
    if data.get("handler") is None and not data.get("handlers"):
        raise ConfigError(
            f"{source}:{_line(lines, ('handler',))}: handler: required (module:function), "
            "or a handlers: map of job type -> module:function"
        )
    section_key = present[0]
    section = data.pop(section_key)
    if not isinstance(section, dict):
        raise ConfigError(
            f"{source}:{_line(lines, (section_key,))}: {section_key}: expected a mapping of settings"
        )
    try:
        config = WorkerConfig.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, source, lines, ()) from None
    name, section = _resolve_section(section_key, dict(section), known, source, lines)
    try:
        config._broker_config = broker_class(name).config_model.model_validate(section)
    except ValidationError as e:
        raise _config_error(e, source, lines, (section_key,)) from None
    except ConfigError as e:
        raise ConfigError(f"{source}:{_line(lines, (section_key,))}: {e}") from e
    config._section = section_key
    config._broker_name = name
    return config


def _resolve_section(
    key: str,
    section: dict[str, Any],
    known: dict[str, tuple[str, ...]],
    source: str,
    lines: dict[Loc, int],
) -> tuple[str, dict[str, Any]]:
    """Which broker a section picks: ``broker: {type: NAME}``, a ``backend:`` key among the
    brokers sharing a section, else the section's default broker."""
    if key == "broker":
        name = str(section.pop("type", ""))
        if not name:
            raise ConfigError(
                f"{source}:{_line(lines, ('broker',))}: broker.type: required (a broker name)"
            )
    else:
        candidates = known[key]
        name = str(section.get("backend", candidates[0]))
        if name not in candidates:
            raise ConfigError(
                f"{source}:{_line(lines, (key, 'backend'))}: {key}.backend: {name!r} is not "
                f"one of {', '.join(candidates)}"
            )
    try:
        broker_class(name)
    except ConfigError as e:
        raise ConfigError(f"{source}:{_line(lines, (key,))}: {key}: {e}") from e
    return name, section


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


_HIDDEN = re.compile(r"__brokerq_var_(\d+)__")


def _parse_with_vars_hidden(text: str) -> tuple[Any, dict[Loc, int]] | None:
    """Parse ``text`` with each ``${VAR}`` stood in for by a plain word, then put them back.

    ``{brokers: ${KAFKA}}`` is malformed YAML as written (``{`` opens a flow mapping inside a
    flow mapping), yet it means what ``brokers: ${KAFKA}`` means in block style: read both
    alike, so the variable is substituted, or named when unset. None when there is no
    ``${VAR}``; yaml.YAMLError when the text is malformed for another reason. Lines are kept.
    """
    found: list[str] = []

    def hide(m: re.Match[str]) -> str:
        found.append(m.group(0))
        return f"__brokerq_var_{len(found) - 1}__"

    hidden = _VAR.sub(hide, text)
    if not found:
        return None
    data = yaml.load(hidden, Loader=_UniqueKeyLoader)
    lines = _line_map(yaml.compose(hidden))

    def unhide(value: Any) -> Any:
        if isinstance(value, str):
            return _HIDDEN.sub(lambda m: found[int(m.group(1))], value)
        if isinstance(value, dict):
            return {unhide(k): unhide(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unhide(v) for v in value]
        return value

    return unhide(data), {tuple(unhide(k) for k in loc): n for loc, n in lines.items()}


def _interpolate(value: Any, loc: Loc, lines: dict[Loc, int], source: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), lines, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), lines, source) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m: re.Match[str]) -> str:
            env = os.environ.get(m.group(1))
            if env is not None:
                return env
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(
                f"{source}:{_line(lines, loc)}: {_dotted(loc)}: environment variable "
                f"{m.group(1)} is not set (use ${{{m.group(1)}:-default}} for a default)"
            )

        return _VAR.sub(sub, value)
    return value


def _line_map(node: yaml.Node | None, loc: Loc = ()) -> dict[Loc, int]:
    """Map each key path to its 1-based line in the YAML source."""
    lines: dict[Loc, int] = {}
    if node is None:
        return lines
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*loc, key_node.value)
            lines.update(_line_map(value_node, key))
            lines[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, (*loc, i)))
    return lines


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _config_error(
    e: ValidationError, source: str, lines: dict[Loc, int], prefix: Loc
) -> ConfigError:
    parts = []
    for err in e.errors():
        loc = (*prefix, *(p for p in err["loc"] if isinstance(p, (str, int))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{source}:{_line(lines, loc)}: {_dotted(loc)}: {msg}")
    return ConfigError("\n".join(parts))
