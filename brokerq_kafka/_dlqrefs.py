"""Dead-letter refs and the admin group's commit metadata (the bookkeeping of _dlqadmin).

A ref names one dead letter as ``"<partition>/<offset>"``. Records after the admin group's
committed offset that were already handled travel in the commit's metadata as
``brokerq-done:3-5,9`` (runs of offsets), at most ``METADATA_LIMIT`` characters.
"""

from __future__ import annotations

from brokerq.errors import ConfigError
from brokerq_kafka.config import KqConf

DONE_PREFIX = "brokerq-done:"
METADATA_LIMIT = 3000  # below Kafka's default offset.metadata.max.bytes (4096)


def admin_group(conf: KqConf) -> str:
    return f"{conf.group}.dlq-admin"


def make_ref(partition: int, offset: int) -> str:
    return f"{partition}/{offset}"


def parse_ref(ref: str) -> tuple[int, int]:
    """``"<partition>/<offset>"`` → (partition, offset); ConfigError when malformed."""
    part, sep, off = ref.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        partition, offset = int(part), int(off)
    except ValueError:
        raise ConfigError(f"dead letter ref {ref!r}: expected PARTITION/OFFSET") from None
    if partition < 0 or offset < 0:
        raise ConfigError(f"dead letter ref {ref!r}: expected PARTITION/OFFSET")
    return partition, offset


def encode_done(offsets: set[int]) -> str:
    """``{3, 4, 5, 9}`` → ``"brokerq-done:3-5,9"`` ("" when empty)."""
    if not offsets:
        return ""
    runs: list[str] = []
    ordered = sorted(offsets)
    start = prev = ordered[0]
    for o in [*ordered[1:], None]:
        if o is not None and o == prev + 1:
            prev = o
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if o is not None:
            start = prev = o
    return DONE_PREFIX + ",".join(runs)


def decode_done(metadata: str | None) -> set[int]:
    """The offsets in a commit's metadata; anything unrecognised is an empty set."""
    if not metadata or not metadata.startswith(DONE_PREFIX):
        return set()
    out: set[int] = set()
    try:
        for run in metadata[len(DONE_PREFIX) :].split(","):
            if not run:
                continue
            lo, _, hi = run.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        return set()
    return out
