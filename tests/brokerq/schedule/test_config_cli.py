"""``schedules:`` in worker YAML, ``schedules_from``, and ``brokerq schedule list|fire|run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brokerq.config import load
from brokerq.errors import ConfigError
from brokerq.schedule import parse_fire_time
from brokerq.schedule.provider import load_provider, scheduler_for
from brokerq.schedule.spec import human_duration
from tests.brokerq.schedule.procs import BROKERQ, ROOT
from tests.contract import wait_for

HEAD = "name: cfg\nembedded: {path: '%s'}\nhandler: json:dumps\n"


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "w.yaml"
    p.write_text(HEAD % (tmp_path / "q.db") + body)
    return p


def error_of(tmp_path: Path, body: str) -> str:
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load(p)
    return str(info.value).replace(str(p), "FILE")


def test_schedules_load(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            "schedules:\n"
            "  - {name: nightly, cron: '0 2 * * *', timezone: Europe/Berlin, json: {k: 1}}\n"
            "  - {name: beat, every: 15m, catch_up: all, max_catch_up: 5, jitter: 2s}\n"
            "sync_interval: 30s\n",
        )
    )
    assert [s.name for s in cfg.schedules] == ["nightly", "beat"]
    assert cfg.schedules[1].every == 900 and cfg.schedules[1].jitter == 2
    assert cfg.sync_interval == 30


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "schedules:\n  - name: a\n    cron: '0 25 * * *'\n",
            "FILE:6: schedules.0.cron: invalid cron",
        ),
        (
            "schedules:\n  - name: a\n    every: 1m\n  - name: b\n    cron: '0 1 * * *'\n"
            "    timezone: Europe/Nowhere\n",
            "FILE:9: schedules.1.timezone: unknown time zone 'Europe/Nowhere'",
        ),
        (
            "schedules:\n  - name: a\n    every: soon\n",
            "FILE:6: schedules.0.every: invalid duration",
        ),
        ("schedules:\n  - {name: a, every: 1m, colour: red}\n", "schedules.0.colour: unknown key"),
        (
            "schedules:\n  - {name: a, every: 1m}\n  - {name: a, every: 2m}\n",
            "FILE:4: schedules: schedule name 'a' is used twice",
        ),
    ],
)
def test_schedule_errors_name_file_line_and_key(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in error_of(tmp_path, body)


def test_provider_accepts_mappings_and_validates(tmp_path: Path) -> None:
    provide = load_provider("tests.brokerq.schedule.providers:from_file")
    os.environ["BQ_SCHEDULES"] = str(tmp_path / "s.json")
    try:
        (tmp_path / "s.json").write_text(json.dumps([{"name": "x", "every": "1m"}]))
        assert [s.name for s in provide()] == ["x"]
        (tmp_path / "s.json").write_text(json.dumps([{"name": "x", "cron": "bad"}]))
        with pytest.raises(ValueError, match="invalid cron"):
            provide()
    finally:
        del os.environ["BQ_SCHEDULES"]
    with pytest.raises(ConfigError, match="schedules_from"):
        load_provider("tests.brokerq.schedule.nope:load")


def test_scheduler_for_uses_the_config_name_as_namespace(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "schedules:\n  - {name: a, every: 1m}\n"))
    with cfg.build_broker() as broker:
        scheduler = scheduler_for(cfg, broker)
        assert scheduler.namespace == "cfg" and scheduler.schedules[0].name == "a"


def test_human_duration() -> None:
    assert [human_duration(x) for x in (900, 5400, 0.25, 1.5, 86400)] == [
        "15m",
        "1h30m",
        "250ms",
        "1.5s",
        "1d",
    ]


def bq(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([BROKERQ, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_list_and_fire(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "schedules:\n  - {name: nightly, cron: '30 2 * * *', timezone: Europe/Berlin, value: hi}\n",
    )
    out = bq("schedule", "list", str(p), "--next", "2").stdout.splitlines()
    assert out[0] == "nightly\tcron 30 2 * * *\tEurope/Berlin\tlast: never"
    assert len(out) == 3 and out[1].startswith("  next: ") and "02:30:00 CE" in out[1]
    job_id = bq("schedule", "fire", str(p), "nightly").stdout.strip()
    assert job_id.startswith("sched:cfg:nightly:")
    assert "pending      1" in bq("stats", str(p)).stdout
    bad = bq("schedule", "fire", str(p), "nope", check=False)
    assert bad.returncode == 3 and "no schedule named 'nope' (known: nightly)" in bad.stderr
    row = json.loads(bq("schedule", "list", str(p), "--json", "--next", "1").stdout)
    assert row["name"] == "nightly" and row["last_fire"] is None


def test_cli_invalid_cron_is_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, "schedules:\n  - {name: a, cron: '* * *'}\n")
    bad = bq("schedule", "list", str(p), check=False)
    assert bad.returncode == 3
    assert bad.stderr.strip().splitlines() == [
        f"brokerq: error: {p}:5: schedules.0.cron: invalid cron expression '* * *': "
        "expected 5 fields"
    ]


def test_schedule_run_without_schedules_fails(tmp_path: Path) -> None:
    bad = bq("schedule", "run", str(write(tmp_path, "")), check=False)
    assert bad.returncode == 3 and "no schedules" in bad.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
def test_brokerq_run_fires_schedules_beside_the_worker(tmp_path: Path) -> None:
    record = tmp_path / "fires.txt"
    p = tmp_path / "w.yaml"
    p.write_text(
        HEAD.replace("json:dumps", "tests.brokerq.schedule.fire_handler:record")
        % (tmp_path / "q.db")
        + "schedules:\n  - {name: beat, every: 500ms}\n"
    )
    env = dict(os.environ, BQ_FIRES=str(record))
    proc = subprocess.Popen([BROKERQ, "run", str(p)], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: record.exists() and len(record.read_text().splitlines()) >= 3, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    stopped = time.time()
    log = tmp_path / "off.txt"
    with open(log, "wb") as err_file:
        off = subprocess.Popen(
            [BROKERQ, "run", "--no-schedules", str(p)], cwd=ROOT, env=env, stderr=err_file
        )
    try:
        assert wait_for(lambda: b"consuming" in log.read_bytes(), 30)
        time.sleep(1.5)  # three ticks: none may fire
    finally:
        off.send_signal(signal.SIGTERM)
        off.wait(30)
    assert off.returncode == 0, log.read_text()
    assert b"scheduling" not in log.read_bytes()
    fired = [line.split(" ")[0] for line in record.read_text().splitlines()]
    assert all(parse_fire_time(f).timestamp() < stopped for f in fired)
