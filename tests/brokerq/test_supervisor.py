"""processes: N: a supervisor runs N consumers, restarts one that dies, stops all on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from brokerq.embedded import SqliteBroker
from brokerq.testing.contract import wait_for

ROOT = Path(__file__).resolve().parents[2]
BROKERQ = str(Path(sys.executable).with_name("brokerq"))


def _lines(path: Path) -> list[list[str]]:
    try:
        return [line.split(" ", 2) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_supervised_processes_share_the_work_restart_and_stop(tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    env = dict(os.environ, BQ_RECORD=str(record), BQ_DB=str(tmp_path / "q.db"))
    config = tmp_path / "w.yaml"
    config.write_text(
        "name: supervised\n"
        "embedded: {path: '${BQ_DB}', queue: q, visibility_timeout: 2s}\n"
        "handler: tests.brokerq.supervised_handler:record\n"
        "concurrency: 1\n"
        "processes: 2\n"
        "shutdown_timeout: 10s\n"
    )
    broker = SqliteBroker({"path": str(tmp_path / "q.db"), "queue": "q"})
    with broker, broker.producer() as producer:
        producer.push_many([f"m{i}" for i in range(40)])
    sup = subprocess.Popen(
        [BROKERQ, "run", str(config)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: len({v for _, _, v in _lines(record)}) >= 40, 60)
        assert len({idx for _, idx, _ in _lines(record)}) == 2, "both workers should take jobs"
        children = _children(sup.pid)
        assert len(children) == 2
        victim = min(children)
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: len(_children(sup.pid) - {victim}) == 2, 30), "not restarted"
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=30)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert sup.returncode == 0, err
    assert "exited with code -9; restarting" in err
    assert _children(sup.pid) == set()
    handled = [v for _, _, v in _lines(record)]
    assert sorted(set(handled)) == sorted(f"m{i}" for i in range(40))


def test_a_child_that_cannot_start_is_not_restarted_forever(tmp_path: Path) -> None:
    code = (
        "import logging, sys\n"
        "from brokerq.supervisor import Supervisor\n"
        "logging.basicConfig()\n"
        f"sys.exit(Supervisor(['run', {str(tmp_path / 'missing.yaml')!r}], 2, 5.0).run())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert "(config or unsupported); stopping" in proc.stderr
