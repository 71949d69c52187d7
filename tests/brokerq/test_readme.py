"""The README's embedded quickstart runs as written, and its pushes reach the worker that
``configs/demo.yaml`` describes (issue 11 #15)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.brokerq.test_cli import BROKERQ
from tests.contract import wait_for

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def python_block(after_heading: str) -> str:
    """The first ```python block after ``after_heading``."""
    start = README.index(after_heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(README, start)
    assert match is not None, f"no python block after {after_heading!r}"
    return match.group(1)


def test_embedded_quickstart_meets_configs_demo_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".demo").mkdir()
    exec(compile(python_block("### Embedded"), "README.md", "exec"), {})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BROKERQ_DEMO_DB", None)
    config = str(ROOT / "configs" / "demo.yaml")

    def counts() -> dict[str, int]:
        out = subprocess.run(
            [BROKERQ, "stats", config, "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return {k: v for k, v in json.loads(out).items() if k != "oldest_age_seconds"}

    assert counts() == {"pending": 2, "delayed": 1, "in_flight": 0, "dead": 0, "paused": 0}
    worker = subprocess.Popen(
        [BROKERQ, "run", config], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: counts()["pending"] == 0, 60, 0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "reminder for bob: urgent" in err and "reminder for ann: hi" in err
    assert counts() == {"pending": 0, "delayed": 1, "in_flight": 0, "dead": 0, "paused": 0}


def test_testing_your_handlers_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("### Testing your handlers"), "README.md", "exec"), {})
