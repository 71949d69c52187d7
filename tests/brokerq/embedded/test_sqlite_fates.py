"""Handlers that kill, hang or exit, in real ``brokerq run`` processes on one sqlite file
(issue 10 time limits and crash loops, issue 11 #8). Handlers: tests/brokerq/cli_handlers.py
``fates`` / ``fates_async``; they record ``start <value> <attempt> <thread> <pid>`` and
``done <value>`` lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokerq.embedded import SqliteBroker
from tests.brokerq.test_cli import BROKERQ, ROOT, bq
from tests.contract import wait_for


class Run:
    """A config on a fresh sqlite file, and the ``brokerq run`` processes started on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.record = tmp_path / "record.txt"
        self.env = dict(os.environ, BQ_RECORD=str(self.record))
        self.procs: list[subprocess.Popen[str]] = []
        self.config = ""

    def configure(self, handler: str, concurrency: int, max_attempts: int = 2) -> None:
        p = self.tmp / "fates.yaml"
        p.write_text(
            f"embedded: {{path: {self.tmp / 'q.db'}, visibility_timeout: 1s}}\n"
            f"handler: tests.brokerq.cli_handlers:{handler}\n"
            f"concurrency: {concurrency}\n"
            f"retry: {{max_attempts: {max_attempts}, backoff: 100ms, jitter: false}}\n"
            "time_limit: 1s\ntime_limit_grace: 1s\nshutdown_timeout: 5s\n"
        )
        self.config = str(p)

    def push(self, *values: str) -> None:
        """Push through the library (the CLI's push has its own tests; this is faster)."""
        with SqliteBroker({"path": str(self.tmp / "q.db")}) as broker:
            broker.producer().push_many(values)

    def start(self) -> subprocess.Popen[str]:
        err = open(self.tmp / f"stderr-{len(self.procs)}.txt", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [BROKERQ, "run", self.config], cwd=ROOT, env=self.env, stderr=err, text=True
        )
        err.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(30)

    def lines(self) -> list[list[str]]:
        try:
            return [line.split() for line in self.record.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def done(self) -> set[str]:
        return {parts[1] for parts in self.lines() if parts[0] == "done"}

    def starts(self, value: str) -> list[list[str]]:
        return [p for p in self.lines() if p[0] == "start" and p[1] == value]

    def dead_values(self) -> set[str]:
        """Values of the dead letters, read through the library (cheap enough to poll)."""
        with SqliteBroker({"path": str(self.tmp / "q.db")}) as broker:
            return {d.message.value.decode() for d in broker.dead_letters()}

    def dead(self) -> dict[str, dict[str, object]]:
        """The dead letters as ``brokerq dead --json`` shows them, by value."""
        letters = json.loads(bq("dead", self.config, "--json", env=self.env).stdout)
        return {str(d["value"]): d for d in letters}

    def stderr(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("stderr-*.txt")))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    for proc in r.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_handler_that_kills_its_process_is_dead_lettered_as_worker_crashed(run: Run) -> None:
    run.configure("fates", concurrency=1, max_attempts=2)
    run.push("exit")
    for _ in range(4):  # each run dies in the handler; the lease expires, the next takes it
        if run.dead_values():
            break
        proc = run.start()
        assert wait_for(lambda: proc.poll() is not None or bool(run.dead_values()), 30, 0.1), (  # noqa: B023
            run.stderr()
        )
        if proc.poll() is None:
            assert run.stop(proc) == 0, run.stderr()
        else:
            assert proc.returncode == 3, run.stderr()  # os._exit(3) in the handler
    letter = run.dead()["exit"]
    assert letter["error_type"] == "WorkerCrashed", letter
    assert "max_attempts=2" in str(letter["error"])
    assert [s[2] for s in run.starts("exit")] == ["1", "2"], "ran again after max_attempts"


def test_hanging_looping_and_exiting_handlers_fail_their_job_and_keep_the_threads(
    run: Run,
) -> None:
    """A sync handler looping in Python (interrupted at 1 s), one blocked in C (abandoned at
    limit + grace, its job handed to a fresh thread) and one calling sys.exit(1): each is
    retried then dead-lettered with its own error while the other jobs keep flowing, and the
    process keeps its 2 threads."""
    run.configure("fates", concurrency=2, max_attempts=2)
    run.push("loop", "c", "sysexit", *[f"ok{i}" for i in range(20)])
    proc = run.start()
    wanted = {f"ok{i}" for i in range(20)}
    assert wait_for(lambda: wanted <= run.done() and len(run.dead_values()) == 3, 60, 0.1), (
        run.stderr()
    )
    dead = run.dead()
    assert dead["loop"]["error_type"] == "TimeLimitExceeded"
    assert dead["c"]["error_type"] == "TimeLimitExceeded"
    assert dead["sysexit"]["error_type"] == "SystemExit"
    for value in ("loop", "c", "sysexit"):
        assert [s[2] for s in run.starts(value)] == ["1", "2"], value
        assert dead[value]["attempt"] == 2
    # the job blocked in C ran its second attempt on another thread while the first was stuck
    first_c, second_c = run.starts("c")
    assert first_c[3] != second_c[3]
    # the process still takes work
    run.push("ok-after-1", "ok-after-2")
    assert wait_for(lambda: {"ok-after-1", "ok-after-2"} <= run.done(), 30), run.stderr()
    assert proc.poll() is None, "the worker process died"
    assert {s[4] for s in run.lines() if s[0] == "start"} == {str(proc.pid)}
    assert run.stop(proc) == 0, run.stderr()
    # one log line per outcome, with the error type (issue 11 #14); the traceback goes with
    # the final failure
    err = run.stderr()
    assert err.count("failed on attempt 1, will retry: SystemExit: 1") == 1, err
    assert err.count("dead after attempt 2: SystemExit: 1") == 1, err
    assert err.count("will retry: TimeLimitExceeded") == 2, err
    assert "in fates" in err and "sys.exit(1)" in err  # the traceback


def test_an_async_handler_awaiting_60s_is_cancelled_at_its_limit(run: Run) -> None:
    run.configure("fates_async", concurrency=2, max_attempts=2)
    run.push("await60", "ok1", "ok2")
    proc = run.start()
    assert wait_for(lambda: "await60" in run.dead_values(), 30, 0.1), run.stderr()
    assert run.dead()["await60"]["error_type"] == "TimeLimitExceeded"
    assert [s[2] for s in run.starts("await60")] == ["1", "2"]
    assert {"ok1", "ok2"} <= run.done()
    assert "done await60" not in run.record.read_text()
    assert run.stop(proc) == 0, run.stderr()
