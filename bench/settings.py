"""What one run is set to: where the servers are, its id, quick or full, N per measure."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from brokerq.testing import servers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

# N per measure: (full, quick). go-queue's Pusher as shipped is bounded by kafka-go's 1 s
# BatchTimeout per chunk, so it gets a smaller N to keep the run short (rates are rates).
SIZES: dict[str, tuple[int, int]] = {
    "kq.push.100": (200_000, 100_000),
    "kq.push.1024": (100_000, 50_000),
    "gq.kq.push.100": (100_000, 50_000),
    "gq.kq.push.1024": (10_000, 5_000),
    "kq.consume": (200_000, 100_000),
    "dq.delay": (20_000, 5_000),
    "dq.at": (2_000, 500),
    "embedded": (20_000, 5_000),
    "rss": (1_000_000, 100_000),
    "worker": (200_000, 100_000),
    # taskiq's kiq waits for each record's ack (send_and_wait, ~100-1000/s here) and its
    # gathered kiq runs ~2 k/s: smaller N for taskiq, and for FastStream's per-message
    # consume (~5 k/s); rates are rates
    "peer.taskiq.serial": (2_000, 1_000),
    "peer.taskiq": (20_000, 10_000),
    "kq.batch.rss": (500_000, 100_000),
}


def goqueue_binary() -> Path:
    """The go-queue baselines built by bench/run: ``$BROKERQ_BENCH_BIN/goqueue``."""
    default = Path.home() / ".cache" / "brokerq" / "bench"
    return Path(os.environ.get("BROKERQ_BENCH_BIN") or default) / "goqueue"


def new_run_id() -> str:
    """``BROKERQ_BENCH_RUN_ID`` or ``HHMMSS-<6 hex>``: names this run's topics, tubes, keys."""
    return os.environ.get("BROKERQ_BENCH_RUN_ID") or (
        time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:6]
    )


@dataclass(frozen=True)
class Settings:
    """One run's settings; measures read them, nothing changes them after the start."""

    quick: bool = False
    reps: int = 3
    rss_jobs: int | None = None
    run_id: str = field(default_factory=new_run_id)
    kafka: str = field(default_factory=servers.kafka_bootstrap)
    beanstalks: tuple[str, ...] = field(
        default_factory=lambda: tuple(servers.beanstalkd_endpoints())
    )
    redis_url: str = field(default_factory=servers.redis_url)
    goqueue: Path = field(default_factory=goqueue_binary)

    @property
    def repetitions(self) -> int:
        """Repetitions of each rate (the median is kept): 1 when quick."""
        return 1 if self.quick else max(1, self.reps)

    @property
    def redis_prefix(self) -> str:
        """brokerq's guard keys for this run; deleted at the end."""
        return f"bench-{self.run_id}:"

    @property
    def redis_address(self) -> str:
        """``host:port`` of Redis (go-queue's flag)."""
        host, port = servers.redis_address(self.redis_url)
        return f"{host}:{port}"

    def n(self, key: str) -> int:
        """N for the measure ``key`` of SIZES, full or quick."""
        full, quick = SIZES[key]
        return quick if self.quick else full
