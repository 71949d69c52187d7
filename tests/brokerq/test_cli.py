"""The ``brokerq`` command through its real entry point, in subprocesses, on sqlite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.contract import wait_for

ROOT = Path(__file__).resolve().parents[2]
BROKERQ = str(Path(sys.executable).with_name("brokerq"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["BQ_RECORD"] = str(tmp_path / "record.txt")
    e["BQ_DB"] = str(tmp_path / "q.db")
    e.pop("BQ_SLEEP", None)
    e.pop("BQ_FAIL", None)
    return e


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "worker.yaml"
    p.write_text(
        "name: cli-test\n"
        "embedded: {path: '${BQ_DB}', queue: q, visibility_timeout: 2s}\n"
        "handler: tests.brokerq.cli_handlers:record\n"
        "concurrency: 2\n"
        "retry: {max_attempts: 2, backoff: 100ms, jitter: false}\n"
        "shutdown_timeout: 10s\n"
    )
    return p


def bq(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [BROKERQ, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def recorded(env: dict[str, str]) -> list[str]:
    try:
        return Path(env["BQ_RECORD"]).read_text().splitlines()
    except FileNotFoundError:
        return []


def start_worker(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BROKERQ, "run", str(config)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )


def test_check_ok(config: Path, env: dict[str, str]) -> None:
    out = bq("check", str(config), env=env).stdout
    assert out.startswith("ok: ")
    assert "sqlite broker reachable" in out


def test_push_run_then_graceful_sigterm(config: Path, env: dict[str, str]) -> None:
    for v in ("a", "b", "c"):
        bq("push", str(config), v, "--key", "k", "--header", "x=1", env=env)
    assert "pending      3" in bq("stats", str(config), env=env).stdout
    worker = start_worker(config, env)
    try:
        assert wait_for(lambda: len(recorded(env)) == 3, 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert sorted(recorded(env)) == ["a", "b", "c"]
    assert "worker stopped" in err
    stats = bq("stats", str(config), "--json", env=env).stdout
    assert '"pending": 0' in stats


def test_sigterm_waits_for_in_flight_then_second_signal_exits_at_once(
    config: Path, env: dict[str, str]
) -> None:
    bq("push", str(config), "slow", env=env)
    env["BQ_SLEEP"] = "4"  # long enough for a loaded machine to see it in flight
    worker = start_worker(config, env)
    try:
        assert wait_for(
            lambda: '"in_flight": 1' in bq("stats", str(config), "--json", env=env).stdout, 30
        )
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert recorded(env) == ["slow"], "in-flight job must finish before exit"
        # second signal: exit at once, the unfinished job is not acked
        bq("push", str(config), "cut", env=env)
        env["BQ_SLEEP"] = "30"
        worker = start_worker(config, env)
        assert wait_for(
            lambda: '"in_flight": 1' in bq("stats", str(config), "--json", env=env).stdout, 30
        )
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=10)
        assert time.monotonic() - started < 5
        assert worker.returncode == 130
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert recorded(env) == ["slow"]
    stats = bq("stats", str(config), "--json", env=env).stdout
    assert '"pending": 1' in stats or '"in_flight": 1' in stats, stats


def test_delay_at_revoke(config: Path, env: dict[str, str]) -> None:
    job = bq("delay", str(config), "later", "--in", "1m", env=env).stdout.strip()
    assert job
    when = "2099-01-01T00:00:00+00:00"
    bq("at", str(config), "far", "--time", when, env=env)
    assert '"delayed": 2' in bq("stats", str(config), "--json", env=env).stdout
    assert bq("revoke", str(config), job, env=env).stdout.strip() == "revoked"
    assert '"delayed": 1' in bq("stats", str(config), "--json", env=env).stdout
    assert "not found" in bq("revoke", str(config), job, env=env).stdout


def test_dead_letters_list_retry_purge(config: Path, env: dict[str, str]) -> None:
    bq("push", str(config), "doomed", env=env)
    env["BQ_FAIL"] = "1"
    worker = start_worker(config, env)
    try:
        assert wait_for(lambda: "1 dead letter(s)" in bq("dead", str(config), env=env).stdout, 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    listing = bq("dead", str(config), env=env).stdout
    assert "RuntimeError: told to fail" in listing
    assert "doomed" in listing
    assert bq("dead", str(config), "--retry", env=env).stdout.strip() == "requeued 1"
    assert '"pending": 1' in bq("stats", str(config), "--json", env=env).stdout
    env.pop("BQ_FAIL")
    worker = start_worker(config, env)
    try:
        assert wait_for(lambda: recorded(env) == ["doomed"], 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    assert bq("dead", str(config), "--purge", env=env).stdout.strip() == "purged 0"


@pytest.mark.parametrize(
    ("yaml_text", "code", "needle"),
    [
        ("embedded: {path: x.db\nhandler: a:b\n", 3, "malformed YAML"),
        (
            "embedded: {path: x.db}\nhandler: tests.nope:handler\n",
            3,
            "cannot import module 'tests.nope'",
        ),
        (
            "embedded: {path: x.db}\nhandler: tests.brokerq.cli_handlers:missing\n",
            3,
            "has no 'missing'",
        ),
        (
            "embedded: {path: x.db}\nhandler: a:b\nconcurrency: lots\n",
            3,
            "concurrency: Input should be a valid integer",
        ),
        ("kq: {brokers: []}\nhandler: a:b\n", 3, "kq.brokers"),
        (
            "kq: {brokers: ['127.0.0.1:1'], topic: t, group: g}\nhandler: tests.brokerq.cli_handlers:record\n",
            4,
            "kafka 127.0.0.1:1",
        ),
        (
            "dq: {beanstalks: [{endpoint: '127.0.0.1:1', tube: t}], redis: {url: 'redis://127.0.0.1:1/0'}}\n"
            "handler: tests.brokerq.cli_handlers:record\n",
            4,
            "127.0.0.1:1",
        ),
        (
            "embedded: {path: /proc/brokerq.db}\nhandler: tests.brokerq.cli_handlers:record\n",
            4,
            "/proc/brokerq.db",
        ),
    ],
)
def test_errors_are_one_line_with_a_named_exit_code(
    tmp_path: Path, env: dict[str, str], yaml_text: str, code: int, needle: str
) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    proc = bq("check", str(p), env=env, check=False)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("brokerq: error: ")
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_command_line_values(config: Path, env: dict[str, str]) -> None:
    proc = bq("delay", str(config), "x", "--in", "soon", env=env, check=False)
    assert proc.returncode == 3
    assert "invalid duration 'soon'" in proc.stderr
    proc = bq("at", str(config), "x", "--time", "tomorrow", env=env, check=False)
    assert proc.returncode == 3
    assert "not an ISO 8601 time" in proc.stderr
    proc = bq("push", str(config), "x", "--header", "nokv", env=env, check=False)
    assert proc.returncode == 3
    assert "expected NAME=VALUE" in proc.stderr
    proc = bq("at", str(config), "x", "--time", "2000-01-01T00:00:00+00:00", env=env, check=False)
    assert proc.returncode == 3
    assert "past" in proc.stderr


def test_python_dash_m_and_help(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "brokerq", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "brokerq run configs/demo.yaml" in proc.stdout
