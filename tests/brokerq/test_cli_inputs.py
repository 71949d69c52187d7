"""Bad input to the ``brokerq`` command: one line naming the input and the rule, the
documented exit code, no traceback, nothing created or changed (issue 11 #6, #12, #13)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.brokerq.test_cli import BROKERQ, ROOT, bq

HANDLER = "tests.brokerq.cli_handlers:record"


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("brokerq: error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["BQ_RECORD"] = str(tmp_path / "record.txt")
    e.pop("BQ_SETTING_THAT_IS_NOT_SET", None)
    return e


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_memory_backend_is_refused_by_every_command(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write(tmp_path, f"embedded: {{backend: memory}}\nhandler: {HANDLER}\n")
    for args in (("push", cfg, "x"), ("check", cfg), ("run", cfg), ("stats", cfg)):
        one_line_error(bq(*args, env=env, check=False), 3, "inside one process")
    cfg = write(tmp_path, f"embedded: {{backend: memory, path: x.db}}\nhandler: {HANDLER}\n")
    one_line_error(bq("check", cfg, env=env, check=False), 3, "path: not used by backend: memory")


@pytest.mark.parametrize(
    ("handler", "needles"),
    [
        ("tests.brokerq.cli_handlers:three", ("cli_handlers:three", "'b', 'c' have no default")),
        (
            "tests.brokerq.cli_raises_on_import:handler",
            ("importing module 'tests.brokerq.cli_raises_on_import' raised KeyError",),
        ),
    ],
)
def test_handlers_that_cannot_run_are_refused_by_check_and_run(
    tmp_path: Path, env: dict[str, str], handler: str, needles: tuple[str, ...]
) -> None:
    cfg = write(tmp_path, f"embedded: {{path: {tmp_path / 'q.db'}}}\nhandler: {handler}\n")
    for command in ("check", "run"):
        one_line_error(bq(command, cfg, env=env, check=False), 3, *needles)


def test_middleware_errors_name_the_middleware(tmp_path: Path, env: dict[str, str]) -> None:
    base = f"embedded: {{path: {tmp_path / 'q.db'}}}\nhandler: {HANDLER}\n"
    cfg = write(tmp_path, base + "middleware: [no_such_pkg.metrics:Prometheus]\n")
    one_line_error(
        bq("check", cfg, env=env, check=False), 3, "middleware 'no_such_pkg.metrics:Prometheus'"
    )
    cfg = write(tmp_path, base + "middleware: [tests.brokerq.cli_handlers:NotMiddleware]\n")
    one_line_error(bq("run", cfg, env=env, check=False), 3, "is not a brokerq.middleware")


def test_command_line_mistakes_are_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write(tmp_path, f"embedded: {{path: {tmp_path / 'q.db'}}}\nhandler: {HANDLER}\n")
    one_line_error(bq("run", cfg, "--log-level", "bogus", env=env, check=False), 2, "'bogus'")
    one_line_error(bq("check", str(tmp_path), env=env, check=False), 3, "Is a directory")
    one_line_error(bq("check", str(tmp_path / "none.yaml"), env=env, check=False), 3, "none.yaml")
    one_line_error(
        bq("delay", cfg, "x", "--in", "-5s", env=env, check=False), 3, "cannot be negative"
    )
    one_line_error(
        bq("delay", cfg, "x", "--in", "100000000h", env=env, check=False), 3, "year 9999"
    )
    one_line_error(bq("push", env=env, check=False), 2, "Missing argument 'CONFIG'")
    assert not (tmp_path / "q.db").exists(), "a refused command created the database"


def _without_root_override() -> list[str]:
    """A command prefix under which file permissions hold even for root (CAP_DAC_OVERRIDE
    dropped), or [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs setpriv (util-linux) to test read-only files")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


def run_limited(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_without_root_override(), BROKERQ, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_read_only_directory_and_file(tmp_path: Path, env: dict[str, str]) -> None:
    ro_dir = tmp_path / "ro"
    ro_dir.mkdir()
    cfg = write(tmp_path, f"embedded: {{path: {ro_dir / 'q.db'}}}\nhandler: {HANDLER}\n")
    ro_dir.chmod(0o555)
    try:
        one_line_error(run_limited("push", cfg, "x", env=env), 3, "is not writable")
        # read-only commands on a file that does not exist: empty, nothing created
        assert '"pending": 0' in run_limited("stats", cfg, "--json", env=env).stdout
        assert list(ro_dir.iterdir()) == []
    finally:
        ro_dir.chmod(0o755)
    db = tmp_path / "q.db"
    cfg = write(tmp_path, f"embedded: {{path: {db}}}\nhandler: {HANDLER}\n")
    bq("push", cfg, "kept", env=env)
    conn = sqlite3.connect(db)  # a dead letter to list
    conn.execute("UPDATE jobs SET state = 'dead', error = 'KeyError: x', failed_at = 1")
    conn.commit()
    conn.close()
    db.chmod(0o444)
    before = db.read_bytes()
    try:
        one_line_error(run_limited("push", cfg, "y", env=env), 3, "read-only")
        stats = run_limited("stats", cfg, "--json", env=env)
        assert stats.returncode == 0, stats.stderr
        assert '"dead": 1' in stats.stdout
        listing = run_limited("dead", cfg, env=env)
        assert listing.returncode == 0, listing.stderr
        assert "KeyError: x" in listing.stdout
    finally:
        db.chmod(0o644)
    assert db.read_bytes() == before


def test_bad_job_ids_are_one_line_and_create_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    db = tmp_path / "q.db"
    cfg = write(tmp_path, f"embedded: {{path: '{db}'}}\nhandler: {HANDLER}\n")
    proc = bq("push", cfg, "x", "--unique-for", "1h", env=env, check=False)
    one_line_error(proc, 3, "--unique-for needs --id")
    proc = bq("delay", cfg, "x", "--in", "1s", "--id", "has space", env=env, check=False)
    one_line_error(proc, 3, "--id 'has space' may hold only printable ASCII without spaces")
    proc = bq("push", cfg, "x", "--id", "a" * 129, env=env, check=False)
    one_line_error(proc, 3, "--id must be 1 to 128 characters, got 129")  # not "job_id must"
    proc = bq("push", cfg, "x", "--id", "a", "--unique-for", "soon", env=env, check=False)
    one_line_error(proc, 3, "--unique-for soon")
    proc = bq("push", cfg, "x", "--id", "a", "--unique-for", "99999d", env=env, check=False)
    one_line_error(proc, 3, "--unique-for 99999d: must be 0 to")
    help_text = bq("push", "--help", env=env).stdout
    assert "printable ASCII characters, no spaces" in " ".join(help_text.split())
    assert not db.exists()


def test_stats_watch_options_are_checked(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write(tmp_path, f"embedded: {{path: {tmp_path / 'q.db'}}}\nhandler: {HANDLER}\n")
    stats = ("stats", cfg, "--watch", "--count", "1", "--interval")
    # 0s polled the broker in a tight loop; a bad value's error named no option
    one_line_error(bq(*stats, "0s", env=env, check=False), 2, "'--interval'", "0.1s")
    one_line_error(bq(*stats, "soon", env=env, check=False), 2, "'--interval'", "'soon'")
    one_line_error(
        bq("stats", cfg, "--count", "2", env=env, check=False), 2, "--count needs --watch"
    )
    assert not (tmp_path / "q.db").exists(), "a refused command created the database"
