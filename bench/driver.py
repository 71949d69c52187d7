"""The driver: runs one implementation of a measure, keeps its sample, makes the figures.

A failed implementation is recorded (``errors``) and the run goes on. Every repetition is a
sample; ``finalize`` keeps one figure per (measure, implementation): the median by rate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from bench import harness
from bench.harness import ChildFn, Figures
from bench.progress import Progress
from bench.settings import Settings
from brokerq.testing import servers


def last_line(text: str) -> str:
    """The line of an error that says what went wrong (a traceback's last line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    head = lines[0].split(":", 1)[0]
    return lines[0] if len(lines) == 1 else f"{head}: {lines[-1]}"


class Run:
    """One run of the bench: settings, progress, samples, figures, errors, and what to clean up."""

    def __init__(self, settings: Settings, progress: Progress) -> None:
        self.settings = settings
        self.progress = progress
        self.reps = settings.repetitions
        self.samples: list[Figures] = []
        self.figures: list[Figures] = []
        self.errors: list[dict[str, Any]] = []
        self.log_lines: list[str] = []
        self.topics: list[str] = []

    def n(self, key: str) -> int:
        return self.settings.n(key)

    def note(self, text: str) -> None:
        """A line for the log above the bar and for latest.json."""
        self.log_lines.append(text)
        self.progress.log(text)

    # -- running one implementation --------------------------------------------------------
    def py(self, fn: ChildFn, timeout: float = 300, /, **kwargs: Any) -> Callable[[], Figures]:
        """A call running ``fn(**kwargs)`` in a child interpreter."""
        return lambda: harness.run_python(fn, timeout, **kwargs)

    def go(self, sub: str, timeout: float = 300, /, **flags: Any) -> Callable[[], Figures]:
        """A call running ``goqueue SUB -flags``."""
        return lambda: harness.run_go(self.settings.goqueue, sub, timeout, **flags)

    def measure(
        self, measure: str, impl: str, label: str, call: Callable[[], Figures], rep: int = 0
    ) -> Figures | None:
        """Run ``call`` as repetition ``rep`` of ``impl`` on ``measure``; its sample or None."""
        suffix = f" (rep {rep + 1}/{self.reps})" if self.reps > 1 else ""
        self.progress.step(f"{label} — {impl}{suffix}")
        try:
            r = call()
        except Exception as e:  # a failed measure is recorded, the run goes on
            msg = f"{type(e).__name__}: {e}"
            self.errors.append({"measure": measure, "impl": impl, "error": msg})
            self.note(f"[red]{label} / {impl} failed:[/red] {last_line(msg)[:200]}")
            return None
        if r.get("elapsed_s") and "count" in r:
            r["per_s"] = r["count"] / r["elapsed_s"] if r["elapsed_s"] > 0 else float("inf")
        r.update({"measure": measure, "impl": impl, "label": label, "rep": rep})
        self.samples.append(r)
        return r

    def finalize(self) -> None:
        """One figure per (measure, implementation): the median repetition by rate."""
        groups: dict[tuple[str, str], list[Figures]] = {}
        for r in self.samples:
            groups.setdefault((r["measure"], r["impl"]), []).append(r)
        self.figures = []
        for rs in groups.values():
            if len(rs) > 1 and all("per_s" in r for r in rs):
                ranked = sorted(rs, key=lambda r: float(r["per_s"]))
                fig = dict(ranked[(len(ranked) - 1) // 2])  # lower median
                fig["reps"] = len(rs)
                fig["reps_per_s"] = [r["per_s"] for r in rs]
            else:
                fig = dict(rs[0], reps=len(rs))
            m = str(fig["measure"])
            if m.startswith("kq.push.") and m.endswith(".gq"):
                # one go-queue Pusher figure (acks=0) stands against both acks rows
                size = m.split(".")[2]
                for acks in ("all", "1"):
                    self.figures.append(dict(fig, measure=f"kq.push.{size}.acks{acks}"))
            self.figures.append(fig)

    # -- names this run creates ------------------------------------------------------------
    def topic(self, name: str, partitions: int = 4) -> str:
        """A fresh topic ``bench-<name>-<run id>`` with leaders, deleted by ``cleanup``."""
        topic = f"bench-{name}-{self.settings.run_id}"
        servers.create_topic(self.settings.kafka, topic, partitions)
        self.topics.append(topic)
        return topic

    def tube(self, name: str) -> str:
        """A tube name ``bench-<name>-<run id>`` (drained by the measure that fills it)."""
        return f"bench-{name}-{self.settings.run_id}"

    def drain(self, tube: str) -> int:
        """Delete ``tube``'s jobs on every node; the count."""
        return servers.drain_tube(self.settings.beanstalks, tube)

    def cleanup(self) -> None:
        """Delete this run's topics and Redis guard keys (best effort)."""
        servers.delete_topics(self.settings.kafka, self.topics)
        with contextlib.suppress(Exception):
            servers.delete_redis_prefix(self.settings.redis_url, self.settings.redis_prefix)
