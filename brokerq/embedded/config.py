"""The ``embedded:`` config section, shared by the sqlite and memory brokers.

YAML::

    embedded:
      path: ./brokerq.db        # sqlite only
      queue: default
      visibility_timeout: 30s   # sqlite only: a killed worker's job runs again after this
      poll_interval: 50ms       # sqlite only
      synchronous: full         # sqlite only
      priority: 2               # of jobs pushed without priority= (lower runs first)
      keep_done: 1h             # how long finished jobs answer Broker.job (0: forget at once)
      backend: sqlite           # or memory (tests, examples)

One model serves both brokers. The memory broker lives inside one process, so it refuses
the sqlite-only file settings (``path``, ``synchronous``) rather than ignore them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokerq.duration import Duration
from brokerq.records import Capabilities

#: What both embedded brokers (memory, sqlite) can do: everything the contract names.
CAPABILITIES = Capabilities(
    delay=True,
    priority=True,
    counts_redeliveries=True,
    idempotent_push=True,
    idempotent_delay=True,
    job_lookup=True,
    pause=True,
)

MAX_PRIORITY = 2**32 - 1
DEFAULT_PRIORITY = 2  # go-queue's dq priority, so both brokers agree on the default


def check_priority(priority: int | None, default: int) -> int:
    """``priority`` (or ``default`` when None) after checking it is an int in
    0..2**32-1 (beanstalkd's range; lower runs first). ValueError otherwise."""
    if priority is None:
        return default
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority {priority!r}: expected an integer 0..{MAX_PRIORITY}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority {priority}: outside 0..{MAX_PRIORITY} (lower runs first)")
    return priority


class EmbeddedConf(BaseModel):
    """Settings of the embedded brokers (sqlite file, or in-process memory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        default="./brokerq.db", description="sqlite database file (created if absent)"
    )
    queue: str = Field(default="default", min_length=1, description="queue name inside the file")
    visibility_timeout: Duration = Field(
        default=30.0,
        description="lease of a claimed job; renewed every third of it while the handler runs, "
        "so only a dead worker's job comes back, after this long",
    )
    poll_interval: Duration = Field(
        default=0.05,
        description="how often an idle receive looks for jobs pushed by other processes "
        "(pushes from the same process wake it at once)",
    )
    synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="producer commits: full = fsync per push (survives power loss); "
        "normal = survives a crashed process only",
    )
    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=0,
        le=MAX_PRIORITY,
        description="priority of jobs pushed without priority= (lower runs first)",
    )
    keep_done: Duration = Field(
        default=3600.0,
        ge=0,
        description="how long a finished (done or revoked) job is remembered, so Broker.job "
        "answers 'done' rather than nothing; 0 = forget at once",
    )
    backend: Literal["sqlite", "memory"] = Field(default="sqlite", description="which broker")

    @model_validator(mode="after")
    def _memory_has_no_file(self) -> EmbeddedConf:
        if self.backend == "memory":
            given = [k for k in ("path", "synchronous") if k in self.model_fields_set]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: not used by backend: memory (it keeps jobs inside "
                    "one process, in no file); remove it, or use backend: sqlite"
                )
        return self

    @field_validator("visibility_timeout")
    @classmethod
    def _positive_lease(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("visibility_timeout must be at least 100ms")
        return value

    @field_validator("poll_interval")
    @classmethod
    def _sane_poll(cls, value: float) -> float:
        if not 0.001 <= value <= 10.0:
            raise ValueError("poll_interval must be between 1ms and 10s")
        return value
