"""Retry policy: how many attempts a message gets and how long to wait between them."""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, ConfigDict, Field, model_validator

from brokerq.duration import Count, Duration


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter, capped; after ``max_attempts`` the message is dead-lettered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: Count = Field(default=5, ge=1, description="attempts in all, the first included")
    backoff: Duration = Field(default=1.0, description="delay before the 2nd attempt")
    max_backoff: Duration = Field(default=300.0, description="cap on any single delay")
    jitter: bool = Field(default=True, description="randomise each delay within [d/2, d]")

    @model_validator(mode="after")
    def _sane(self) -> RetryPolicy:
        if not (math.isfinite(self.backoff) and math.isfinite(self.max_backoff)):
            raise ValueError("backoff and max_backoff must be finite durations")
        if self.max_backoff < self.backoff:
            raise ValueError(
                f"max_backoff ({self.max_backoff:g}s) must not be below backoff ({self.backoff:g}s)"
            )
        return self

    def should_retry(self, attempt: int) -> bool:
        """True when a message that failed on ``attempt`` (1-based) gets another try."""
        return attempt < self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` before the next one."""
        base = min(self.max_backoff, self.backoff * 2.0 ** max(0, attempt - 1))
        if self.jitter:
            return random.uniform(base / 2, base)
        return base
