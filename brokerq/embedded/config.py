"""The ``embedded:`` config section, shared by the sqlite and memory brokers.

YAML::

    embedded:
      path: ./brokerq.db        # sqlite only
      queue: default
      visibility_timeout: 30s   # sqlite only: a killed worker's job runs again after this
      backend: sqlite           # or memory (tests, examples)

One model serves both brokers so that switching ``backend`` never turns a valid section
into an "unknown key" error: the memory broker ignores the file settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brokerq.duration import Duration


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
    backend: Literal["sqlite", "memory"] = Field(default="sqlite", description="which broker")

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
