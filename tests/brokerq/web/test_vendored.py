"""The vendored files are the ones VENDORED.md names (unmodified) and ship in the wheel."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import brokerq.web

VENDOR = Path(brokerq.web.__file__).parent / "static" / "vendor"


def test_vendored_files_match_their_recorded_hashes() -> None:
    table = (VENDOR / "VENDORED.md").read_text()
    rows = re.findall(r"^\| (\S+) \|.*\| ([0-9a-f]{64}) \|$", table, re.M)
    assert {name for name, _ in rows} == {"htmx.min.js", "pico.min.css"}
    for name, digest in rows:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert (VENDOR / "htmx.LICENSE").exists() and (VENDOR / "pico.LICENSE.md").exists()


def test_package_data_ships_templates_and_static_files() -> None:
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert '"brokerq.web" = ["templates/*.html", "static/*", "static/vendor/*"]' in pyproject
