"""Worker no-op throughput with Prometheus metrics on vs off (bench/metrics_overhead.py).

Runs ``metrics_overhead.run`` in one child: the Worker over an in-process source (8 threads,
no broker: the middleware's share is the largest it can be) and a Kafka consume (8
processors), metrics off and on alternately, best of ``reps`` each. A row per measure:
brokerq = metrics on, the other column = metrics off. Target (issue 16): on >= 0.9x off.
"""

from __future__ import annotations

from typing import Any

from bench import metrics_overhead
from bench.driver import Run
from bench.harness import Figures, run_python
from bench.measure import Measure

ONLY = ("runtime", "kq")


def overhead(n: int, reps: int, kafka: str) -> Figures:
    """``metrics_overhead.run`` for ONLY (child process)."""
    return {"rows": metrics_overhead.run(n=n, reps=reps, only=ONLY, kafka=kafka)}


def _key(name: str) -> str:
    return "metrics." + name.split(",")[0].replace(" ", "").replace("=", "")


def run(r: Run) -> None:
    n = r.n("worker")
    label = "worker no-op, Prometheus metrics on vs off"
    r.progress.step(f"{label} (best of {r.reps} each)")
    try:
        out = run_python(overhead, 1200, n=n, reps=r.reps, kafka=r.settings.kafka)
    except Exception as e:
        r.errors.append(
            {"measure": "metrics", "impl": "brokerq", "error": f"{type(e).__name__}: {e}"}
        )
        r.note(f"[red]{label} failed:[/red] {str(e)[-200:]}")
        return
    rows: list[dict[str, Any]] = out["rows"]
    for row in rows:
        m = _key(str(row["measure"]))
        common = {"measure": m, "label": f"{label}: {row['measure']}", "rep": 0, "n": row["n"]}
        r.samples.append(
            dict(common, impl="brokerq", per_s=row["on_per_s"], cpu_us=row["on_cpu_us"])
        )
        r.samples.append(
            dict(common, impl="metrics off", per_s=row["off_per_s"], cpu_us=row["off_cpu_us"])
        )


MEASURE = Measure(name="metrics-overhead", key="metrics", run=run, steps=1, repeated=False)
