"""Kinds of bad input, checked over every command of the ``brokerq`` CLI at once (so a
command added later is covered without a test of its own): a directory given as CONFIG is a
config error (exit 3, one line), and every numeric option has a range that refuses
out-of-range values in one line (exit 2)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from brokerq.cli import EXIT_CONFIG, EXIT_USAGE, main
from tests.brokerq.test_cli import BROKERQ, ROOT

CONFIG_ARGS = ("config", "configs")
# a value each other required parameter accepts (config is loaded before any of them is used)
FILLERS = {"value": "x", "job_id": "x", "name": "x", "after": "1s", "when": "2030-01-01T00:00Z"}


def commands(
    group: click.Group = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def config_commands() -> list[tuple[str, ...]]:
    return [p for p, cmd in commands() if any(x.name in CONFIG_ARGS for x in cmd.params)]


def args_for(cmd: click.Command, config: str) -> list[str]:
    """Positional arguments in order, then the required options."""
    args: list[str] = []
    for p in cmd.params:
        if isinstance(p, click.Argument):
            args.append(config if p.name in CONFIG_ARGS else FILLERS[str(p.name)])
    for p in cmd.params:
        if isinstance(p, click.Option) and p.required:
            args += [p.opts[0], FILLERS[str(p.name)]]
    return args


def test_every_command_taking_a_config_is_found() -> None:
    found = {" ".join(p) for p in config_commands()}
    assert {"run", "check", "push", "schedule list", "web", "dead"} <= found, found


@pytest.mark.parametrize("path", config_commands(), ids=" ".join)
def test_a_directory_as_config_is_a_config_error(path: tuple[str, ...], tmp_path: Path) -> None:
    cmd = dict(commands())[path]
    proc = subprocess.run(
        [BROKERQ, *path, *args_for(cmd, str(tmp_path))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert proc.stderr.startswith("brokerq: error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(tmp_path) in proc.stderr and "directory" in proc.stderr.lower(), proc.stderr


def numeric_options() -> list[tuple[tuple[str, ...], click.Option]]:
    return [
        (path, p)
        for path, cmd in commands()
        for p in cmd.params
        if isinstance(p, click.Option)
        and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))
    ]


def test_every_numeric_option_has_a_range() -> None:
    unbounded = [
        f"brokerq {' '.join(path)} {opt.opts[0]}"
        for path, opt in numeric_options()
        if not isinstance(opt.type, click.types._NumberRangeBase)
    ]
    assert not unbounded, f"numeric options without a range: {unbounded}"


def out_of_range(rng: click.types._NumberRangeBase[Any, Any]) -> list[str]:
    """Values just outside the range (and -1 when the range starts at or above 0)."""
    bad = []
    if rng.min is not None:
        bad.append(str(rng.min - 1))
        if rng.min >= 0 and rng.min - 1 != -1:
            bad.append("-1")
    if rng.max is not None:
        bad.append(str(rng.max + 1))
    return bad


@pytest.mark.parametrize(
    "case", numeric_options(), ids=lambda c: " ".join(c[0]) + " " + c[1].opts[0]
)
def test_out_of_range_numbers_are_refused_in_one_line(
    case: tuple[tuple[str, ...], click.Option], tmp_path: Path
) -> None:
    path, opt = case
    assert isinstance(opt.type, click.types._NumberRangeBase)
    cmd = dict(commands())[path]
    for bad in out_of_range(opt.type):
        args = [*path, *args_for(cmd, str(tmp_path / "c.yaml")), opt.opts[0], bad]
        result = CliRunner().invoke(main, args, prog_name="brokerq")
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert opt.opts[0] in result.stderr and bad in result.stderr, result.stderr
