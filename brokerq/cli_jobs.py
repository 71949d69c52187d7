"""Job control on the command line: ``brokerq job`` (one job's state by id), ``brokerq pause``
/ ``brokerq resume`` (every worker of the queue), and the ``--id`` / ``--unique-for`` options
of push, delay and at (idempotent enqueue, brokerq.enqueue). Generic: any broker that declares
the capability answers; one that cannot says so in one line (exit 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import click

from brokerq import cli_io
from brokerq.broker import Broker
from brokerq.cli_common import (
    EXIT_DUPLICATE,
    EXIT_NOT_FOUND,
    NotFound,
    config_arg,
    errors_to_exit,
    opened,
)
from brokerq.duration import parse_duration
from brokerq.enqueue import check_job_id, unique_seconds
from brokerq.errors import ConfigError
from brokerq.records import JobInfo

F = Callable[..., Any]


def enqueue_options(fn: F) -> F:
    """``--id`` and ``--unique-for`` for push, delay and at."""
    fn = click.option(
        "--unique-for",
        "unique_for",
        default=None,
        metavar="DURATION",
        help="Keep --id reserved this long after the job finished too (5m, 1h).",
    )(fn)
    return click.option(
        "--id",
        "job_id",
        default=None,
        metavar="ID",
        help=f"Caller-chosen job id (1 to 128 printable ASCII characters, no spaces): while "
        f"a job with it is pending, delayed, running or retrying, enqueueing it again fails with exit "
        f"{EXIT_DUPLICATE} naming its state.",
    )(fn)


def unique_option(unique_for: str | None, job_id: str | None) -> float | None:
    """``--unique-for`` as seconds (None when not given), after checking ``--id``
    (brokerq.enqueue.check_job_id); ConfigError naming the option when either is bad or
    ``--unique-for`` comes without ``--id``."""
    try:
        check_job_id(job_id)
    except ValueError as e:
        raise ConfigError(_option_named(e, "job_id", "--id")) from None
    if unique_for is None:
        return None
    if job_id is None:
        raise ConfigError("--unique-for needs --id: it keeps that id reserved")
    try:
        return unique_seconds(parse_duration(unique_for), job_id)
    except ValueError as e:
        raise ConfigError(
            f"--unique-for {unique_for}: {str(e).removeprefix('unique_for ')}"
        ) from None


def _option_named(error: ValueError, name: str, option: str) -> str:
    """The library's message about argument ``name`` as one about CLI ``option``."""
    text = str(error)
    return option + text.removeprefix(name) if text.startswith(name) else f"{option}: {text}"


def _when(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")


def job_json(info: JobInfo) -> dict[str, Any]:
    """One job as JSON (times as unix seconds; the message as in ``brokerq dead --json``)."""
    out: dict[str, Any] = {
        "id": info.id,
        "state": info.state,
        "attempt": info.attempt,
        "last_error": info.last_error,
        "due": info.due,
        "created_at": info.created_at,
        "finished_at": info.finished_at,
        "details": _plain(info.details),
    }
    if info.message is not None:
        msg = info.message
        out["key"] = None if msg.key is None else msg.key.decode(errors="replace")
        out["headers"] = dict(msg.headers)
        out.update(cli_io.value_json(msg.value))
    return out


def _plain(details: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe details: scalars as they are, mappings (dq copies per node) nested."""
    return {
        str(k): _plain(v)
        if isinstance(v, Mapping)
        else v
        if isinstance(v, int | float | str | bool | None)
        else str(v)
        for k, v in details.items()
    }


def _rows(details: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Details as text rows; a nested mapping gives one ``name.key`` row per entry."""
    rows: list[tuple[str, Any]] = []
    for k, v in details.items():
        if isinstance(v, Mapping):
            rows.extend(_rows(v, f"{prefix}{k}."))
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


@click.command(epilog=f"Exit {EXIT_NOT_FOUND} when the broker knows no job with that id.")
@config_arg
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@errors_to_exit
def job(config: str, job_id: str, as_json: bool) -> None:
    """Show the job ID: state (pending, delayed, running, retrying, done, dead, revoked),
    attempt, last error, due, created and finished times (read-only).

    Finished jobs are remembered for the broker's keep_done (sqlite/memory: 1h by default).
    """
    with opened(config) as (_, broker):
        info = broker.job(job_id)
    if info is None:
        raise NotFound(
            f"job {job_id!r} not found (never existed, or finished longer ago than the "
            "broker remembers)"
        )
    if as_json:
        click.echo(json.dumps(job_json(info), indent=2))
        return
    rows: list[tuple[str, Any]] = [
        ("id", info.id),
        ("state", info.state),
        ("attempt", info.attempt),
        ("last_error", info.last_error),
        ("due", _when(info.due)),
        ("created_at", _when(info.created_at)),
        ("finished_at", _when(info.finished_at)),
        *_rows(info.details),
    ]
    for name, value in rows:
        if value is not None:
            click.echo(f"{name:<12} {' '.join(str(value).split())}")


def _set_paused(config: str, paused: bool) -> None:
    with opened(config) as (cfg, broker):
        (broker.pause if paused else broker.resume)()
        scope = broker.pause_scope
    click.echo(f"{'paused' if paused else 'resumed'} {scope} ({cfg.broker_name})")


@click.command()
@config_arg
@errors_to_exit
def pause(config: str) -> None:
    """Stop every worker of the queue from starting new jobs (running ones finish; delayed
    jobs that come due wait). Lasts until `brokerq resume`, across worker restarts."""
    _set_paused(config, True)


@click.command()
@config_arg
@errors_to_exit
def resume(config: str) -> None:
    """Let the queue's workers start jobs again after `brokerq pause`."""
    _set_paused(config, False)


def stats_with_pause(broker: Broker) -> Callable[[], dict[str, int]]:
    """``broker.stats`` plus ``paused`` (0/1) where the broker can pause."""
    if not broker.capabilities.pause:
        return broker.stats
    return lambda: {**broker.stats(), "paused": int(broker.is_paused())}


def register(main: click.Group) -> None:
    """Add job, pause and resume to the ``brokerq`` group."""
    for command in (job, pause, resume):
        main.add_command(command)
