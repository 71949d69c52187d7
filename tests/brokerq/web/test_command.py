"""``brokerq web``: the bind rule, the extra's absence, and a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from brokerq.web.settings import check_bind, is_loopback
from tests.brokerq.web.cdp import wait_for

BROKERQ = [sys.executable, "-m", "brokerq"]


def memory_config(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nhandler: a:b\nembedded: {backend: memory}\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_insecure_no_auth_warns_and_a_token_allows() -> None:
    warning = check_bind("0.0.0.0", None, True)
    assert warning is not None and "without authentication" in warning
    assert check_bind("0.0.0.0", "tok", False) is None
    assert check_bind("127.0.0.1", None, False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_non_loopback_without_a_token_refuses_to_start(tmp_path: Path, host: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BROKERQ_WEB_TOKEN"}
    r = subprocess.run(
        [*BROKERQ, "web", str(memory_config(tmp_path)), "--host", host, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--auth-token" in lines[0] and host in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhandler: a:b\nkq: {topic: t, nope: 1}\n")
    r = subprocess.run(
        [*BROKERQ, "web", str(bad), "--port", "1"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 3 and "nope" in r.stderr and "Traceback" not in r.stderr


def test_serves_with_a_token_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "BROKERQ_WEB_TOKEN": "env-token"}
    proc = subprocess.Popen(
        [*BROKERQ, "web", str(memory_config(tmp_path)), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"

    def status(token: str | None) -> int:
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    try:
        wait_for(lambda: status(None) != 0, 60, "brokerq web to listen")
        assert status(None) == 401
        assert status("wrong") == 401
        assert status("env-token") == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b"token required" in out and b"read-only" in out
