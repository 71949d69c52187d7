"""The ``brokerq`` command: run a consumer process from YAML, and operate on its broker.

Errors are one line on stderr and a named exit code, never a traceback.

Examples::

    brokerq run configs/demo.yaml
    brokerq check configs/demo.yaml
    brokerq push configs/demo.yaml '{"to": "ann"}' --key ann
    brokerq push configs/demo.yaml @big.json        # or - for stdin
    brokerq delay configs/demo.yaml 'wake up' --in 5s
    brokerq at configs/demo.yaml 'new year' --time 2027-01-01T00:00:00+00:00
    brokerq stats configs/demo.yaml
    brokerq dead configs/demo.yaml [--json] [--ref ID ...] [--retry | --purge]
    brokerq delay configs/demo.yaml 'bill' --in 1m --id order-42 --unique-for 1h
    brokerq job configs/demo.yaml order-42 [--json]
    brokerq pause configs/demo.yaml / brokerq resume configs/demo.yaml

Read-only commands (``stats``, ``dead`` without --retry/--purge) never create or change
anything. The memory broker is refused: it lives inside one process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from datetime import datetime
from types import FrameType

import click

from brokerq import cli_io, cli_jobs, cli_schedule
from brokerq.cli_common import (
    EXIT_BROKER,
    EXIT_CONFIG,
    EXIT_DUPLICATE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    LOG_LEVELS,
    NotFound,
    OneLineErrors,
    config_arg,
    duration_option,
    errors_to_exit,
    load_config,
    log_level_choice,
    opened,
)
from brokerq.cli_dead import dead as dead_command
from brokerq.errors import ConfigError
from brokerq.handler import import_object
from brokerq.heartbeat import Heartbeat, queue_of
from brokerq.metrics.live import MIN_INTERVAL
from brokerq.metrics.live import show as show_stats
from brokerq.metrics.setup import exporter_for, serving
from brokerq.middleware import LoggingMiddleware, Metrics, Middleware
from brokerq.secrets import MaskingFilter
from brokerq.supervisor import Supervisor
from brokerq.web.command import web as web_command
from brokerq.worker import Worker

# The shared helpers stay importable from here for command modules written against them.
__all__ = [
    "EXIT_BROKER",
    "EXIT_CONFIG",
    "EXIT_DUPLICATE",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "LOG_LEVELS",
    "NotFound",
    "config_arg",
    "errors_to_exit",
    "load_config",
    "main",
    "opened",
]

logger = logging.getLogger(__name__)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # secrets never reach a log line
        handler.addFilter(MaskingFilter())


def _middleware(specs: list[str]) -> list[Middleware]:
    out: list[Middleware] = [LoggingMiddleware()]
    for spec in specs:
        cls = import_object(spec, "middleware")
        try:
            instance = cls()
        except Exception as e:
            raise ConfigError(
                f"middleware {spec!r}: creating it raised {type(e).__name__}: {e}"
            ) from e
        if not isinstance(instance, Middleware):
            raise ConfigError(f"middleware {spec!r} is not a brokerq.middleware.Middleware")
        out.append(instance)
    return out


value_arg = click.argument("value", metavar="VALUE")
VALUE_HELP = (
    "VALUE is the message itself, - to read it from stdin, or @FILE to read a file. "
    f"Exit {EXIT_DUPLICATE} when --id names a job that is live or still reserved."
)

priority_opt = click.option(
    "--priority",
    type=click.IntRange(0, 2**32 - 1),
    default=None,
    help="Lower runs first (0..4294967295, beanstalkd's rule); brokers without priorities refuse it.",
)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="brokerq")
def main() -> None:
    """brokerq: background work that must not be lost (Kafka kq, beanstalkd dq, embedded).

    \b
    Examples:
      brokerq check configs/demo.yaml
      brokerq push configs/demo.yaml '{"to": "ann", "text": "hi"}'
      brokerq delay configs/demo.yaml '{"to": "ann", "text": "later"}' --in 5m
      brokerq run configs/demo.yaml
      brokerq dead configs/demo.yaml --retry
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # handlers are imported relative to where you run


@main.command()
@config_arg
@click.option(
    "--log-level",
    default=None,
    type=log_level_choice,
    help="Override the config's log_level.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes under one supervisor (overrides the config's processes:).",
)
@click.option("--no-schedules", is_flag=True, help="Do not run the config's schedules here.")
@errors_to_exit
def run(config: str, log_level: str | None, processes: int | None, no_schedules: bool) -> None:
    """Run the consumer process described by CONFIG until SIGTERM/SIGINT.

    The config's schedules run beside the worker (any number of processes may: each tick is
    enqueued exactly once); --no-schedules leaves them to others.

    The first signal stops fetching and waits up to shutdown_timeout for running handlers;
    a second signal exits at once (unfinished messages are not acked and come back).
    With processes > 1 a supervisor runs that many worker processes and restarts any that dies.
    """
    cfg = load_config(config)
    _setup_logging((log_level or cfg.log_level).upper())
    count = processes or cfg.processes
    if count > 1:
        cfg.build_handler()  # a missing handler fails here, once, not in every child
        with cfg.build_broker() as probe:
            cfg.worker_options(probe)  # so does a setting the broker cannot honour
        _middleware(cfg.middleware)
        args = ["run", config, "--processes", "1"] + (
            ["--log-level", log_level] if log_level else []
        )
        if no_schedules:  # else every child runs the schedules: each tick still fires once
            args.append("--no-schedules")
        sys.exit(Supervisor(args, count, cfg.shutdown_timeout).run())
    handler = cfg.build_handler()
    middleware = _middleware(cfg.middleware)
    with cfg.build_broker() as broker:
        broker.check()
        exporter = exporter_for(cfg, broker)  # brokerq.metrics: a no-op without `metrics:`
        counts = Metrics()  # the heartbeat reports jobs handled (the dashboard's throughput)
        worker = Worker(
            broker.source,
            middleware=[*exporter.middleware, *middleware, counts],
            **cfg.worker_options(broker),
        )
        _install_signals(worker)
        logger.info("%s: consuming from %s with %s", cfg.name, cfg.broker_name, handler.name)
        beat = Heartbeat(
            broker,
            name=cfg.name,
            queue=queue_of(cfg.broker_config),
            concurrency=worker.concurrency,
            in_flight=lambda: worker.in_flight,
            processed=lambda: counts.processed + counts.failed,
        )
        # `brokerq web` lists live workers from the heartbeat (brokerq.heartbeat)
        with (
            cli_schedule.beside(cfg, broker, not no_schedules, exporter.on_fire),
            beat,
            serving(exporter, worker),
        ):
            worker.consume(handler)


def _install_signals(worker: Worker) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        if worker.stopping:
            logger.warning("second signal: exiting now")
            os._exit(EXIT_INTERRUPTED)
        logger.info("%s: finishing in-flight work, then exiting", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


@main.command()
@config_arg
@errors_to_exit
def check(config: str) -> None:
    """Validate CONFIG, import its handler and reach its broker; exit non-zero with the reason."""
    cfg = load_config(config)
    handler = cfg.build_handler()
    _middleware(cfg.middleware)
    with cfg.build_broker() as broker:
        broker.check()
        cfg.worker_options(broker)  # what the broker cannot do (rate limits, ...) fails here
        notes = broker.check_notes()
    for note in notes:
        click.echo(f"brokerq: note: {note}", err=True)
    click.echo(f"ok: {config}: {cfg.broker_name} broker reachable, handler {handler.name} imported")


@main.command(epilog=VALUE_HELP)
@config_arg
@value_arg
@click.option("--key", default=None, help="Message key (Kafka: picks the partition).")
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@priority_opt
@cli_jobs.enqueue_options
@errors_to_exit
def push(
    config: str,
    value: str,
    key: str | None,
    headers: tuple[str, ...],
    priority: int | None,
    job_id: str | None,
    unique_for: str | None,
) -> None:
    """Push VALUE for immediate processing."""
    unique = cli_jobs.unique_option(unique_for, job_id)
    body = cli_io.read_value(value)
    with opened(config) as (_, broker), broker.producer() as producer:
        hdrs = cli_io.headers(headers)
        producer.push(
            body, key=key, headers=hdrs, priority=priority, job_id=job_id, unique_for=unique
        )
        producer.flush(30)
    click.echo("pushed" if job_id is None else f"pushed {job_id}")


@main.command(epilog=VALUE_HELP)
@config_arg
@value_arg
@click.option("--in", "after", required=True, help="How long from now: 500ms, 5s, 1m, 24h.")
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@priority_opt
@cli_jobs.enqueue_options
@errors_to_exit
def delay(
    config: str,
    value: str,
    after: str,
    headers: tuple[str, ...],
    priority: int | None,
    job_id: str | None,
    unique_for: str | None,
) -> None:
    """Schedule VALUE to run after a delay; prints the job id (for revoke and job)."""
    seconds = cli_io.delay_seconds(after)
    unique = cli_jobs.unique_option(unique_for, job_id)
    body = cli_io.read_value(value)
    with opened(config) as (_, broker), broker.delay_producer() as producer:
        hdrs = cli_io.headers(headers)
        click.echo(
            producer.delay(
                body, seconds, headers=hdrs, priority=priority, job_id=job_id, unique_for=unique
            )
        )


@main.command(epilog=VALUE_HELP)
@config_arg
@value_arg
@click.option(
    "--time",
    "when",
    required=True,
    help="ISO 8601, e.g. 2027-01-01T09:00:00+00:00; without an offset it is local time.",
)
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@priority_opt
@cli_jobs.enqueue_options
@errors_to_exit
def at(
    config: str,
    value: str,
    when: str,
    headers: tuple[str, ...],
    priority: int | None,
    job_id: str | None,
    unique_for: str | None,
) -> None:
    """Schedule VALUE to run at a given time; prints the job id."""
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise ConfigError(f"--time {when!r}: not an ISO 8601 time") from None
    unique = cli_jobs.unique_option(unique_for, job_id)
    body = cli_io.read_value(value)
    with opened(config) as (_, broker), broker.delay_producer() as producer:
        hdrs = cli_io.headers(headers)
        click.echo(
            producer.at(
                body, moment, headers=hdrs, priority=priority, job_id=job_id, unique_for=unique
            )
        )


@main.command()
@config_arg
@click.argument("job_id")
@errors_to_exit
def revoke(config: str, job_id: str) -> None:
    """Cancel a delayed job by the id that delay/at printed. Exit 6 when no such job is
    waiting (already run, revoked, or never existed)."""
    with opened(config) as (_, broker), broker.delay_producer() as producer:
        found = producer.revoke(job_id)
    if not found:
        raise NotFound(
            f"job {job_id!r} not found among waiting jobs (running or run already, revoked, "
            "or never existed)"
        )
    click.echo("revoked")


@main.command()
@config_arg
@click.option("--json", "as_json", is_flag=True, help="Print JSON (JSON lines with --watch).")
@click.option("--watch", is_flag=True, help="Refresh with rates per second until Ctrl-C.")
@click.option(
    "--interval", default="1s", show_default=True, help="Refresh period for --watch (>= 0.1s)."
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after N refreshes.",
)
@errors_to_exit
def stats(config: str, as_json: bool, watch: bool, interval: str, count: int | None) -> None:
    """Counts for the configured queue: pending, delayed, in flight, dead, and paused (0/1)
    where the broker can pause (read-only).

    --watch draws a live table on a terminal (plain lines otherwise) and, when CONFIG has a
    metrics: section, the running worker's processed counts by outcome (brokerq.metrics.live).
    """
    period = duration_option(interval, "--interval", MIN_INTERVAL)
    if count is not None and not watch:
        raise click.UsageError("--count needs --watch")
    with opened(config) as (cfg, broker):
        show_stats(
            cli_jobs.stats_with_pause(broker),
            metrics=cfg.metrics,
            title=f"{cfg.name} ({cfg.broker_name})",
            as_json=as_json,
            watch=watch,
            interval=period,
            count=count,
        )


cli_schedule.register(main, errors_to_exit, _setup_logging)
main.add_command(web_command)  # brokerq web: the dashboard (brokerq/web/command.py)
main.add_command(dead_command)  # brokerq dead: list, requeue, purge (brokerq/cli_dead.py)
cli_jobs.register(main)  # brokerq job, pause, resume (brokerq/cli_jobs.py)
