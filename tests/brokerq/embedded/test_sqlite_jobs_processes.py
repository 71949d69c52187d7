"""Issue 15's "done when" on sqlite, with real processes on one file: two processes racing
for one job id, ``brokerq job`` along a job's life through the real CLI (across a worker
restart), pause with three busy workers, and a rate limit shared by two worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brokerq.embedded import SqliteBroker
from brokerq.errors import DuplicateJob
from tests.brokerq.embedded.conftest import counts
from tests.contract import Recorder, running, wait_for

ROOT = Path(__file__).resolve().parents[3]
BROKERQ = str(Path(sys.executable).with_name("brokerq"))
RACE = Path(__file__).with_name("race_enqueue.py")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses signals")


class Lab:
    """A sqlite file, a worker YAML, a record directory and the processes started on them."""

    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        self.db = str(tmp_path / "q.db")
        self.dir = tmp_path / "records"
        self.dir.mkdir()
        self.config = tmp_path / "worker.yaml"
        self.config.write_text(
            "name: jobs-test\n"
            f"embedded: {{path: '{self.db}', queue: q, visibility_timeout: 5s}}\n"
            "shutdown_timeout: 10s\n" + extra
        )
        self.env = dict(os.environ)
        self.env["BQ_RECORD_DIR"] = str(self.dir)
        self.env["BQ_RECORD"] = str(tmp_path / "record.txt")
        self.env["BQ_GO"] = str(tmp_path / "go")
        self.procs: list[subprocess.Popen[str]] = []

    def bq(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [BROKERQ, args[0], str(self.config), *args[1:]],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def job(self, job_id: str) -> dict[str, object]:
        return dict(json.loads(self.bq("job", job_id, "--json").stdout))

    def state(self, job_id: str) -> str | None:
        """The job's state read through the library (for polling)."""
        with SqliteBroker({"path": self.db, "queue": "q"}) as broker:
            info = broker.job(job_id)
        return None if info is None else info.state

    def worker(self) -> subprocess.Popen[str]:
        err = open(self.dir / f"stderr-{len(self.procs)}.txt", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [BROKERQ, "run", str(self.config)], cwd=ROOT, env=self.env, stderr=err, text=True
        )
        err.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, self.stderr()

    def stderr(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.dir.glob("stderr-*.txt")))

    def starts(self) -> list[tuple[str, int, float]]:
        """``(job id, attempt, time)`` of every recorded start, in time order."""
        out = []
        for log in self.dir.glob("*.log"):
            for line in log.read_text().splitlines():
                _, job, attempt, at = line.split()
                out.append((job, int(attempt), float(at)))
        return sorted(out, key=lambda r: r[2])

    def notes(self) -> list[str]:
        path = Path(self.env["BQ_RECORD"])
        return path.read_text().splitlines() if path.exists() else []

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[[str], Lab]]:
    """A Lab whose YAML ends with the given lines; its processes are killed afterwards."""
    made: list[Lab] = []

    def make(extra: str) -> Lab:
        made.append(Lab(tmp_path, extra))
        return made[-1]

    yield make
    for one in made:
        one.cleanup()


def test_two_processes_race_for_one_job_id(tmp_path: Path) -> None:
    db, start = str(tmp_path / "q.db"), tmp_path / "start"
    with SqliteBroker({"path": db, "queue": "q"}) as broker:
        broker.check()  # the file and schema exist before the racers open it
        racers = [
            subprocess.Popen(
                [sys.executable, str(RACE), db, "order-42", "100", str(start)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        start.touch()
        results = [r.communicate(timeout=120) for r in racers]
        assert all(r.returncode == 0 for r in racers), [e for _, e in results]
        counts = [tuple(map(int, out.split())) for out, _ in results]
        assert sum(c for c, _ in counts) == 1, counts
        assert sum(d for _, d in counts) == 199, counts
        assert broker.stats()["delayed"] + broker.stats()["pending"] == 1
        rec = Recorder()
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) == 1)
            assert wait_for(lambda: getattr(broker.job("order-42"), "state", None) == "done")
            info = broker.job("order-42")
            assert info is not None and info.finished_at is not None
            finished = info.finished_at
            # Within unique_for (2 s) the id is still taken; after it, it is free again.
            with pytest.raises(DuplicateJob), broker.delay_producer() as producer:
                producer.delay(b"order-42", 0.1, job_id="order-42")
            assert time.time() < finished + 2.0, "the check came too late to mean anything"
            time.sleep(max(0.0, finished + 2.2 - time.time()))
            with broker.delay_producer() as producer:
                assert producer.delay(b"order-42", 0.1, job_id="order-42") == "order-42"
            assert wait_for(lambda: len(rec.seen) == 2)
            time.sleep(0.5)
        assert [m.id for m in rec.seen] == ["order-42", "order-42"]


@pytest.mark.serial  # a worker restart and CLI calls inside one 10 s backoff: needs the CPU
def test_brokerq_job_reports_each_state_across_a_worker_restart(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(
        "handler: tests.brokerq.cli_handlers:gated\n"
        "retry: {max_attempts: 2, backoff: 8s, jitter: false}\n"
    )
    assert "Exit 6 when" in lab.bq("job", "--help").stdout
    lab.bq("job", "nobody", code=6)
    assert lab.bq("delay", "wait", "--in", "1h", "--id", "W").stdout.strip() == "W"
    dup = lab.bq("delay", "again", "--in", "1h", "--id", "W", code=7)
    assert "'W'" in dup.stderr and "(delayed)" in dup.stderr, dup.stderr
    assert lab.job("W")["state"] == "delayed"
    lab.bq("revoke", "W")
    assert lab.job("W")["state"] == "revoked"
    assert lab.bq("delay", "fail-me", "--in", "1s", "--id", "F").stdout.strip() == "F"
    worker = lab.worker()
    assert wait_for(lambda: "start fail-me 1" in lab.notes(), 60), lab.stderr()
    assert lab.job("F")["state"] == "running"
    Path(lab.env["BQ_GO"]).touch()
    # Wait through the library (a CLI call per poll is slow); each state is then read by the CLI.
    assert wait_for(lambda: lab.state("F") == "retrying", 10)
    lab.stop(worker)  # restart while the job waits for its retry (8 s)
    retrying = lab.job("F")
    assert retrying["state"] == "retrying", retrying
    assert "boom 1" in str(retrying["last_error"]) and retrying["due"] is not None, retrying
    worker = lab.worker()
    assert wait_for(lambda: lab.state("F") == "dead", 30), lab.stderr()
    dead = lab.job("F")
    assert dead["state"] == "dead" and dead["attempt"] == 2, dead
    assert "boom 2" in str(dead["last_error"]), dead
    assert lab.bq("push", "fine", "--id", "D", "--unique-for", "1h").stdout.strip() == "pushed D"
    assert wait_for(lambda: lab.state("D") == "done", 30), lab.stderr()
    lab.stop(worker)
    done = lab.bq("job", "D").stdout  # the plain form, after the worker stopped
    assert "state        done" in done and "finished_at " in done, done
    assert "(done)" in lab.bq("push", "fine", "--id", "D", code=7).stderr
    # pause / resume through the CLI, seen by stats
    assert lab.bq("pause").stdout.startswith("paused queue q")
    assert json.loads(lab.bq("stats", "--json").stdout)["paused"] == 1
    lab.bq("resume")
    assert "paused       0" in lab.bq("stats").stdout


def test_pause_with_three_busy_workers_on_10k_jobs(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab("handler: tests.brokerq.cli_handlers:stamp\nconcurrency: 2\n")
    n = 10_000
    with SqliteBroker({"path": lab.db, "queue": "q"}) as broker:
        ids = set(broker.producer().push_many([b"x"] * n))
        workers = [lab.worker() for _ in range(3)]
        assert wait_for(lambda: len(lab.starts()) >= 1500, 120), lab.stderr()
        broker.pause()
        paused_at = time.time()
        time.sleep(2.5)
        late = [at - paused_at for _, _, at in lab.starts() if at > paused_at + 1.0]
        assert late == [], f"{len(late)} job(s) started more than 1 s after the pause: {late[:5]}"
        held = len(lab.starts())
        assert held < n, "every job ran before the pause"
        assert all(w.poll() is None for w in workers), lab.stderr()
        broker.resume()
        assert wait_for(lambda: len(lab.starts()) >= n, 180), (len(lab.starts()), lab.stderr())
        assert wait_for(lambda: broker.stats()["in_flight"] == 0, 30)
        for w in workers:
            lab.stop(w)
        starts = lab.starts()
        assert len(starts) == n, f"{len(starts) - n} job start(s) more than jobs: ran twice"
        assert {job for job, _, _ in starts} == ids
        assert counts(broker.stats()) == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_rate_limit_holds_across_two_worker_processes(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(
        "handler: tests.brokerq.cli_handlers:stamp\nconcurrency: 2\nrate_limit: {limit: 50/s}\n"
    )
    assert lab.bq("check").stdout.startswith("ok: ")
    with SqliteBroker({"path": lab.db, "queue": "q"}) as broker:
        broker.producer().push_many([b"x"] * 1500)
        workers = [lab.worker() for _ in range(2)]  # 4 workers in 2 processes
        assert wait_for(lambda: bool(lab.starts()), 60), lab.stderr()
        first = lab.starts()[0][2]
        time.sleep(max(0.0, first + 20.5 - time.time()))
        for w in workers:
            lab.stop(w)
        starts = lab.starts()
        within = [r for r in starts if r[2] < first + 20.0]
        assert 950 <= len(within) <= 1050, len(within)
        assert len({pid.name for pid in lab.dir.glob("*.log")}) == 2, "one process did all"
        assert all(attempt == 1 for _, attempt, _ in starts)
        assert broker.stats()["dead"] == 0
