"""What a measure declares: its names, its share of the progress bar, and how to run it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.driver import Run


@dataclass(frozen=True)
class Measure:
    """One measure: ``python -m bench NAME`` runs it alone; ``--only KEY`` is bench/run's name.

    ``steps`` is its number of progress steps per repetition (``extra_steps`` once per run);
    ``repeated`` says whether ``--reps`` repeats it; ``default`` whether a plain run includes it.
    """

    name: str
    key: str
    run: Callable[[Run], None]
    steps: int
    repeated: bool = True
    extra_steps: int = 0
    default: bool = True

    def total_steps(self, reps: int) -> int:
        return self.steps * (reps if self.repeated else 1) + self.extra_steps
