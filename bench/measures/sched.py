"""Schedule lateness: bench/schedule.py as a measure (not in the default run; ~1 min a broker).

A real ``brokerq schedule run`` fires ``every: 1s`` into the broker and a ``brokerq run``
worker notes when each fire arrives; lateness = handler start - tick. sqlite and dq, one
scheduler, 20 ticks (quick) or 60. ``python -m bench schedule``.
"""

from __future__ import annotations

from bench import schedule
from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure

KINDS = ("sqlite", "dq")


def lateness(kind: str, ticks: int) -> Figures:
    """bench/schedule.py's figures for ``kind``, named like the other lateness rows (child)."""
    r = schedule.measure(kind, ticks, 1)
    return {
        "lateness_ms_p50": r["p50_ms"],
        "lateness_ms_p99": r["p99_ms"],
        "lateness_ms_max": r["max_ms"],
        "early": int(r["early"]),
        "ticks": int(r["ticks"]),
        "duplicates": int(r["duplicates"]),
        "enqueue_ms_p50": r["enqueue_p50_ms"],
        "enqueue_ms_p99": r["enqueue_p99_ms"],
    }


def run(r: Run) -> None:
    ticks = 20 if r.settings.quick else 60
    for kind in KINDS:
        label = f"schedule every 1s, lateness tick -> handler ({kind}, {ticks} ticks)"
        r.measure(
            f"schedule.{kind}",
            "brokerq",
            label,
            r.py(lateness, ticks + 150, kind=kind, ticks=ticks),
        )


MEASURE = Measure(
    name="schedule", key="sched", run=run, steps=len(KINDS), repeated=False, default=False
)
