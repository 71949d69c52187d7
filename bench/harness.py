"""Child processes: every measure runs in its own process, one after another.

A Python measure is a module-level function of a ``bench.*`` module that takes JSON-able
keyword arguments and returns a dict; ``run_python`` runs it in a fresh interpreter
(``python -m bench.harness SPEC``) which prints ``RESULT <json>``. A go-queue measure is a
subcommand of the ``goqueue`` binary (bench/goqueue) that prints one JSON line. So no measure
shares a thread, a connection or a GIL with another.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.settings import REPO

Figures = dict[str, Any]
ChildFn = Callable[..., Figures]

RESULT = "RESULT "
READY = "READY"


def _spec(fn: ChildFn, kwargs: dict[str, Any]) -> str:
    if not fn.__module__.startswith("bench.") or "." in fn.__qualname__:
        raise ValueError(f"{fn.__module__}.{fn.__qualname__}: not a bench module-level function")
    return json.dumps({"module": fn.__module__, "fn": fn.__name__, "kwargs": kwargs})


def python_command(fn: ChildFn, /, **kwargs: Any) -> list[str]:
    """The command line that runs ``fn(**kwargs)`` in a fresh interpreter."""
    return [sys.executable, "-m", "bench.harness", _spec(fn, kwargs)]


def run_python(fn: ChildFn, timeout: float = 300, /, **kwargs: Any) -> Figures:
    """``fn(**kwargs)`` in a child interpreter; its dict, or RuntimeError with its stderr tail."""
    p = subprocess.run(
        python_command(fn, **kwargs), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(RESULT):
            return dict(json.loads(line[len(RESULT) :]))
    tail = (p.stderr or p.stdout).strip()[-1500:]
    raise RuntimeError(f"{fn.__name__} exited {p.returncode}: {tail}")


def go_command(binary: Path, sub: str, /, **flags: Any) -> list[str]:
    """``goqueue SUB -k=v ...``."""
    return [str(binary), sub] + [f"-{k}={v}" for k, v in flags.items()]


def run_go(binary: Path, sub: str, timeout: float = 300, /, **flags: Any) -> Figures:
    """A go-queue measure: its JSON line, or RuntimeError with its stderr tail."""
    if not binary.exists():
        raise RuntimeError(f"{binary} not built (bench/run builds it)")
    p = subprocess.run(
        go_command(binary, sub, **flags), capture_output=True, text=True, timeout=timeout
    )
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"goqueue {sub} exited {p.returncode}: {p.stderr.strip()[-1500:]}")


def spawn(cmd: list[str]) -> subprocess.Popen[str]:
    """A long-running child (e.g. the idle consumer whose memory is sampled), pipes on."""
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )


def child_main(spec: str) -> int:
    """In the child: import the function's module, call it, print its result."""
    s = json.loads(spec)
    if not str(s["module"]).startswith("bench."):
        raise SystemExit(f"not a bench module: {s['module']!r}")
    module = importlib.import_module(s["module"])
    fn: ChildFn = getattr(module, s["fn"])
    out = fn(**s["kwargs"])
    print(RESULT + json.dumps(out), flush=True)  # the parent reads this line
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
