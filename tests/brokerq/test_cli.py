"""The ``brokerq`` command through its real entry point, in subprocesses, on sqlite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brokerq.embedded import SqliteBroker
from brokerq.outcome import Failure
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
    config: Path, env: dict[str, str], tmp_path: Path
) -> None:
    started = tmp_path / "started.txt"
    env["BQ_STARTED"] = str(started)

    def running(value: str) -> bool:  # the handler writes this before it sleeps
        return started.exists() and value in started.read_text().split()

    bq("push", str(config), "slow", env=env)
    env["BQ_SLEEP"] = "4"
    worker = start_worker(config, env)
    try:
        assert wait_for(lambda: running("slow"), 60)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert recorded(env) == ["slow"], "in-flight job must finish before exit"
        # second signal: exit at once, the unfinished job is not acked
        bq("push", str(config), "cut", env=env)
        env["BQ_SLEEP"] = "30"
        worker = start_worker(config, env)
        assert wait_for(lambda: running("cut"), 60)
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        started_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=10)
        assert time.monotonic() - started_at < 5
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
    proc = bq("revoke", str(config), job, env=env, check=False)
    assert proc.returncode == 6, proc.stderr
    assert "not found" in proc.stderr and proc.stdout == ""
    proc = bq("revoke", str(config), "not-an-id", env=env, check=False)
    assert proc.returncode == 6 and "'not-an-id' not found" in proc.stderr


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


def _make_dead_letters(env: dict[str, str], *values: str) -> list[str]:
    """Dead-letter ``values`` through the library, each with a real traceback; return ids."""
    with SqliteBroker({"path": env["BQ_DB"], "queue": "q"}) as broker:
        ids = broker.producer().push_many(list(values))
        with broker.source() as source:
            for _ in values:
                delivery = source.receive(5)
                assert delivery is not None
                try:
                    raise KeyError(delivery.message.value.decode())
                except KeyError as e:
                    source.dead(delivery, Failure.of(e))
    return ids


def test_dead_ref_limit_json_and_purge_of_one(config: Path, env: dict[str, str]) -> None:
    x, y = _make_dead_letters(env, "first", "second")
    listing = bq("dead", str(config), "--ref", x, env=env).stdout
    assert x in listing and y not in listing and "1 dead letter(s)" in listing
    limited = bq("dead", str(config), "--limit", "1", env=env).stdout
    assert x in limited and y not in limited
    assert "showing 1 of 2 dead letter(s)" in limited
    letters = json.loads(bq("dead", str(config), "--json", env=env).stdout)
    assert [d["ref"] for d in letters] == [x, y]
    assert letters[0]["error"] == "KeyError: 'first'" and letters[0]["error_type"] == "KeyError"
    assert "Traceback (most recent call last)" in letters[0]["traceback"]
    assert "raise KeyError(delivery.message.value.decode())" in letters[0]["traceback"]
    assert letters[0]["value"] == "first" and letters[0]["attempt"] == 1
    assert bq("dead", str(config), "--purge", "--ref", x, env=env).stdout.strip() == "purged 1"
    assert [d["ref"] for d in json.loads(bq("dead", str(config), "--json", env=env).stdout)] == [y]
    for args in (("--purge", "--ref", x), ("--retry", "--ref", x), ("--ref", x)):
        proc = bq("dead", str(config), *args, env=env, check=False)
        assert proc.returncode == 6, (args, proc.stderr)
        assert f"no dead letter with ref {x}" in proc.stderr
    assert bq("dead", str(config), "--retry", "--ref", y, env=env).stdout.strip() == "requeued 1"
    assert '"dead": 0' in bq("stats", str(config), "--json", env=env).stdout


def test_push_value_from_stdin_or_file_and_priority(
    config: Path, env: dict[str, str], tmp_path: Path
) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b'{"blob": "' + b"x" * 200_000 + b'"}')
    proc = subprocess.run(
        [BROKERQ, "push", str(config), "-", "--priority", "5"],
        cwd=ROOT,
        env=env,
        input="from stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    bq("push", str(config), f"@{big}", "--priority", "0", env=env)
    bq("delay", str(config), "@" + str(big), "--in", "1h", env=env)
    with SqliteBroker({"path": env["BQ_DB"], "queue": "q"}) as broker, broker.source() as source:
        first, second = source.receive(5), source.receive(5)
    assert first is not None and first.message.value == big.read_bytes()  # priority 0 first
    assert second is not None and second.message.value == b"from stdin\n"
    proc = bq("push", str(config), "@" + str(tmp_path / "missing"), env=env, check=False)
    assert proc.returncode == 3 and "cannot read" in proc.stderr
    proc = bq("push", str(config), "x", "--priority", "-1", env=env, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


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
