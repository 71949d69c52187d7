"""``python -m bench``: run measures, print one table, write bench/results/latest.json.

    python -m bench                          every default measure, 3 repetitions of each rate
    python -m bench --quick                  small N, one repetition
    python -m bench kq-push kq-consume       some measures (names below); "all" = the default set
    python -m bench --only kq,kqc,kqb,kqp,peers,dq,dqm,at,embedded,rss,kqbrss,metrics [--rss-jobs N]   bench/run's keys

Every measure runs in its own process (bench/harness.py), one after another. bench/run
prepares the venv, the services and the go-queue binary, then calls this. Exit status 1
when a measure failed (the table shows the rest), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.driver import Run, last_line
from bench.machine import machine
from bench.measure import Measure
from bench.progress import Progress
from bench.registry import MEASURES
from bench.report import NOTES, render, summarize
from bench.settings import REPO, RESULTS, Settings

BY_NAME = {m.name: m for m in MEASURES}
BY_KEY = {m.key: m for m in MEASURES}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[Measure]]:
    names = ", ".join(f"{m.name} ({m.key})" for m in MEASURES)
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"measures (--only key in brackets): {names}",
    )
    ap.add_argument("measure", nargs="*", help="measures to run (default: all default ones)")
    ap.add_argument("--quick", action="store_true", help="small N, one repetition (~1.5 min)")
    ap.add_argument("--only", default="", help="comma list of keys (listed below)")
    ap.add_argument(
        "--rss-jobs", type=int, default=None, help="delayed jobs for dq-rss (1M, quick 100k)"
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each rate, median kept")
    ap.add_argument("--out", default=str(RESULTS / "latest.json"), help="the JSON written")
    args = ap.parse_args(argv)
    chosen: list[Measure] = []
    for name in args.measure:
        if name == "all":
            chosen += [m for m in MEASURES if m.default]
        elif name in BY_NAME:
            chosen.append(BY_NAME[name])
        else:
            ap.error(f"unknown measure {name!r}; choose from {list(BY_NAME)} or 'all'")
    keys = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(keys) - set(BY_KEY))
    if unknown:
        ap.error(f"--only: unknown {unknown}; choose from {list(BY_KEY)}")
    chosen += [BY_KEY[k] for k in keys]
    if not chosen:
        chosen = [m for m in MEASURES if m.default]
    return args, list(dict.fromkeys(chosen))  # in the order given, once each


def run_measures(run: Run, measures: list[Measure]) -> None:
    """Each measure in turn; one that raises is recorded and the next one runs."""
    try:
        for m in measures:
            try:
                m.run(run)
            except Exception as e:
                run.errors.append(
                    {
                        "measure": m.key,
                        "impl": "*",
                        "error": f"{type(e).__name__}: {e}",
                        "trace": traceback.format_exc(),
                    }
                )
                run.progress.log(f"[red]{m.key} failed:[/red] {e}")
    finally:
        run.cleanup()


def main(argv: list[str] | None = None) -> int:
    args, measures = parse(argv)
    settings = Settings(quick=args.quick, reps=args.reps, rss_jobs=args.rss_jobs)
    started = time.time()
    total = sum(m.total_steps(settings.repetitions) for m in measures)
    with Progress(total, Console(stderr=True)) as progress:
        run = Run(settings, progress)
        run_measures(run, measures)
    run.finalize()
    rows = summarize(run.figures)
    out_console = Console(width=None if sys.stdout.isatty() else 160)
    render(rows, out_console)
    for e in run.errors:
        out_console.print(
            f"[red]error[/red] {e['measure']} / {e['impl']}: {last_line(e['error'])[:300]}"
        )
    result: dict[str, Any] = {
        "run_id": settings.run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "mode": "quick" if settings.quick else "full",
        "only": [m.key for m in measures],
        "machine": machine(settings),
        "notes": NOTES,
        "summary": rows,
        "figures": run.figures,
        "errors": run.errors,
        "log": run.log_lines,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    out_console.print(f"wrote {shown} ({result['duration_s']:.0f} s)")
    return 1 if run.errors else 0
