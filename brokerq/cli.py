"""The ``brokerq`` command: run a consumer process from YAML, and operate on its broker.

Errors are one line on stderr and a named exit code, never a traceback.

Examples::

    brokerq run configs/demo.yaml
    brokerq check configs/demo.yaml
    brokerq push configs/demo.yaml '{"to": "ann"}' --key ann
    brokerq delay configs/demo.yaml 'wake up' --in 5s
    brokerq at configs/demo.yaml 'new year' --time 2027-01-01T00:00:00+00:00
    brokerq stats configs/demo.yaml
    brokerq dead configs/demo.yaml [--retry | --purge]
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any, TypeVar

import click

from brokerq import cli_schedule
from brokerq import config as config_mod
from brokerq.broker import Broker
from brokerq.duration import parse_duration
from brokerq.errors import BrokerError, BrokerqError, ConfigError, NotSupported
from brokerq.handler import import_handler
from brokerq.heartbeat import Heartbeat, queue_of
from brokerq.middleware import LoggingMiddleware, Metrics, Middleware
from brokerq.secrets import MaskingFilter, mask
from brokerq.supervisor import Supervisor
from brokerq.web.command import web as web_command
from brokerq.worker import Worker

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected error
EXIT_USAGE = 2  # bad command line (click)
EXIT_CONFIG = 3  # invalid config, handler or input value
EXIT_BROKER = 4  # broker unreachable or refused the operation
EXIT_UNSUPPORTED = 5  # the broker cannot do this
EXIT_INTERRUPTED = 130  # second signal: exit at once

F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
    click.echo(f"brokerq: error: {mask(message)}", err=True)
    sys.exit(code)


def errors_to_exit(fn: F) -> F:
    """Turn brokerq errors into one line on stderr and a named exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            _fail(EXIT_CONFIG, str(e).replace("\n", "; "))
        except NotSupported as e:
            _fail(EXIT_UNSUPPORTED, str(e))
        except BrokerError as e:
            _fail(EXIT_BROKER, str(e))
        except BrokerqError as e:
            _fail(EXIT_FAILURE, str(e))
        except ValueError as e:
            _fail(EXIT_CONFIG, str(e))

    return wrapper  # type: ignore[return-value]


@contextmanager
def opened(path: str) -> Iterator[tuple[config_mod.WorkerConfig, Broker]]:
    cfg = config_mod.load(path)
    with cfg.build_broker() as broker:
        yield cfg, broker


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
        cls = import_handler(spec)
        instance = cls()
        if not isinstance(instance, Middleware):
            raise ConfigError(f"middleware {spec!r} is not a brokerq.middleware.Middleware")
        out.append(instance)
    return out


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"header {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


config_arg = click.argument("config", type=click.Path(dir_okay=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--log-level", default=None, help="Override the config's log_level.")
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
    cfg = config_mod.load(config)
    _setup_logging((log_level or cfg.log_level).upper())
    count = processes or cfg.processes
    if count > 1:
        cfg.build_handler()  # a missing handler fails here, once, not in every child
        args = ["run", config, "--processes", "1"] + (
            ["--log-level", log_level] if log_level else []
        )
        if no_schedules:  # else every child runs the schedules: each tick still fires once
            args.append("--no-schedules")
        sys.exit(Supervisor(args, count, cfg.shutdown_timeout).run())
    handler = cfg.build_handler()
    with cfg.build_broker() as broker:
        broker.check()
        counts = Metrics()  # the heartbeat reports jobs handled (the dashboard's throughput)
        worker = Worker(
            broker.source,
            middleware=[*_middleware(cfg.middleware), counts],
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
        with cli_schedule.beside(cfg, broker, enabled=not no_schedules), beat:
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
    cfg = config_mod.load(config)
    handler = cfg.build_handler()
    _middleware(cfg.middleware)
    with cfg.build_broker() as broker:
        broker.check()
    click.echo(f"ok: {config}: {cfg.broker_name} broker reachable, handler {handler.name} imported")


@main.command()
@config_arg
@click.argument("value")
@click.option("--key", default=None, help="Message key (Kafka: picks the partition).")
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@errors_to_exit
def push(config: str, value: str, key: str | None, headers: tuple[str, ...]) -> None:
    """Push VALUE for immediate processing."""
    with opened(config) as (_, broker), broker.producer() as producer:
        producer.push(value, key=key, headers=_headers(headers))
        producer.flush(30)
    click.echo("pushed")


@main.command()
@config_arg
@click.argument("value")
@click.option("--in", "after", required=True, help="How long from now: 500ms, 5s, 1m, 24h.")
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@errors_to_exit
def delay(config: str, value: str, after: str, headers: tuple[str, ...]) -> None:
    """Schedule VALUE to run after a delay; prints the job id (for revoke)."""
    seconds = parse_duration(after)
    with opened(config) as (_, broker), broker.delay_producer() as producer:
        click.echo(producer.delay(value, seconds, headers=_headers(headers)))


@main.command()
@config_arg
@click.argument("value")
@click.option("--time", "when", required=True, help="ISO 8601, e.g. 2027-01-01T09:00:00+00:00.")
@click.option("--header", "headers", multiple=True, help="NAME=VALUE, repeatable.")
@errors_to_exit
def at(config: str, value: str, when: str, headers: tuple[str, ...]) -> None:
    """Schedule VALUE to run at a given time; prints the job id."""
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise ConfigError(f"--time {when!r}: not an ISO 8601 time") from None
    with opened(config) as (_, broker), broker.delay_producer() as producer:
        click.echo(producer.at(value, moment, headers=_headers(headers)))


@main.command()
@config_arg
@click.argument("job_id")
@errors_to_exit
def revoke(config: str, job_id: str) -> None:
    """Cancel a delayed job by the id that delay/at printed."""
    with opened(config) as (_, broker), broker.delay_producer() as producer:
        found = producer.revoke(job_id)
    click.echo("revoked" if found else "not found (already run or revoked)")


@main.command()
@config_arg
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@errors_to_exit
def stats(config: str, as_json: bool) -> None:
    """Counts for the configured queue: pending, delayed, in flight, dead."""
    with opened(config) as (_, broker):
        counts = broker.stats()
    if as_json:
        click.echo(json.dumps(counts, sort_keys=True))
    else:
        for name, value in counts.items():
            click.echo(f"{name:<12} {value}")


@main.command()
@config_arg
@click.option("--retry", "requeue", is_flag=True, help="Requeue dead letters (all, or --ref).")
@click.option("--purge", is_flag=True, help="Delete all dead letters.")
@click.option("--ref", "refs", multiple=True, help="Only these dead letters (see the list).")
@click.option("--limit", default=100, show_default=True)
@errors_to_exit
def dead(config: str, requeue: bool, purge: bool, refs: tuple[str, ...], limit: int) -> None:
    """List dead letters, or requeue (--retry) or delete (--purge) them."""
    if requeue and purge:
        raise ConfigError("choose one of --retry and --purge")
    with opened(config) as (_, broker):
        if requeue:
            click.echo(f"requeued {broker.retry_dead(list(refs) or None)}")
        elif purge:
            click.echo(f"purged {broker.purge_dead()}")
        else:
            letters = broker.dead_letters(limit)
            for d in letters:
                value = d.message.value.decode(errors="replace")
                click.echo(
                    f"{d.ref or d.message.id}\tattempt={d.message.attempt}\t{d.error}\t{value[:80]}"
                )
            click.echo(f"{len(letters)} dead letter(s)")


cli_schedule.register(main, errors_to_exit, _setup_logging)
main.add_command(web_command)  # brokerq web: the dashboard (brokerq/web/command.py)
