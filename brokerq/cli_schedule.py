"""``brokerq schedule run|list|fire``, and the scheduler that ``brokerq run`` runs beside its worker.

Examples::

    brokerq schedule list configs/demo.yaml
    brokerq schedule fire configs/demo.yaml nightly-report
    brokerq schedule run configs/demo.yaml
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from types import FrameType
from typing import Any

import click

from brokerq import config as config_mod
from brokerq.broker import Broker
from brokerq.cli_common import config_arg, log_level_choice
from brokerq.errors import ConfigError
from brokerq.schedule import Schedule, Scheduler, fire_time_text
from brokerq.schedule.provider import has_schedules, scheduler_for
from brokerq.schedule.scheduler import FireHook

logger = logging.getLogger(__name__)

JOIN_TIMEOUT = 10.0


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@contextmanager
def beside(
    cfg: config_mod.WorkerConfig,
    broker: Broker,
    enabled: bool,
    on_fire: FireHook | None = None,
) -> Iterator[None]:
    """Run the config's schedules in a thread for the ``with`` body (``brokerq run``);
    ``on_fire`` hears of every tick (the metrics exporter's scheduler metrics).

    Checks first that the broker can run schedules (NotSupported) and that the provider
    answers (ConfigError / ValueError), so a bad setup fails before the worker starts.
    """
    if not enabled or not has_schedules(cfg):
        yield
        return
    scheduler = scheduler_for(cfg, broker, on_fire)
    names = [s.name for s in scheduler.schedules]
    scheduler.open()
    thread = threading.Thread(target=_run_logged, args=(scheduler,), name="brokerq-scheduler")
    thread.daemon = True
    thread.start()
    logger.info("%s: scheduling %s", cfg.name, ", ".join(names) or "(provider: none yet)")
    try:
        yield
    finally:
        scheduler.stop()
        thread.join(JOIN_TIMEOUT)


def _run_logged(scheduler: Scheduler) -> None:
    try:
        scheduler.run()
    except Exception:
        logger.exception("scheduler %s stopped on an unexpected error", scheduler.namespace)


def _stop_on_signals(scheduler: Scheduler) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("%s: stopping the scheduler", signal.Signals(signum).name)
        scheduler.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _local(t: datetime, s: Schedule) -> str:
    return t.astimezone(s.zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def register(
    main: click.Group, errors_to_exit: Decorator, setup_logging: Callable[[str], None]
) -> None:
    """Add the ``schedule`` command group to the ``brokerq`` CLI, with its error handling."""

    @main.group()
    def schedule() -> None:
        """Periodic jobs from the config's ``schedules:`` (and ``schedules_from``)."""

    @schedule.command("run")
    @config_arg
    @click.option(
        "--log-level", default=None, type=log_level_choice, help="Override the config's log_level."
    )
    @errors_to_exit
    def run_cmd(config: str, log_level: str | None) -> None:
        """Run only the scheduler of CONFIG (no worker) until SIGTERM/SIGINT.

        Any number may run at once: each tick is enqueued exactly once.
        """
        cfg = config_mod.load(config)
        setup_logging((log_level or cfg.log_level).upper())
        if not has_schedules(cfg):
            raise ConfigError(f"{config}: no schedules (add schedules: or schedules_from:)")
        with cfg.build_broker() as broker:
            broker.check()
            scheduler = scheduler_for(cfg, broker)
            scheduler.open()
            _stop_on_signals(scheduler)
            logger.info("%s: scheduling %d schedule(s)", cfg.name, len(scheduler.schedules))
            scheduler.run()

    @schedule.command("list")
    @config_arg
    @click.option(
        "--next",
        "count",
        default=3,
        show_default=True,
        type=click.IntRange(1, 1000),
        help="Next fires to show (1 to 1000).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
    @errors_to_exit
    def list_cmd(config: str, count: int, as_json: bool) -> None:
        """Each schedule: name, spec, time zone, last fire and next fires (local and UTC)."""
        cfg = config_mod.load(config)
        with cfg.build_broker() as broker:
            scheduler = scheduler_for(cfg, broker)
            now = datetime.now(timezone.utc)
            for s in scheduler.schedules:
                last = scheduler.last_fire(s.name)
                nexts: list[datetime] = []
                t = now
                for _ in range(count):
                    t = s.next_fire(t)
                    nexts.append(t)
                if as_json:
                    row = {
                        "name": s.name,
                        "spec": s.spec,
                        "timezone": s.timezone,
                        "last_fire": fire_time_text(last) if last else None,
                        "next_fires": [fire_time_text(n) for n in nexts],
                    }
                    click.echo(json.dumps(row))
                    continue
                last_text = f"{_local(last, s)} ({fire_time_text(last)})" if last else "never"
                click.echo(f"{s.name}\t{s.spec}\t{s.timezone}\tlast: {last_text}")
                for n in nexts:
                    click.echo(f"  next: {_local(n, s)} ({fire_time_text(n)})")
            scheduler.close()

    @schedule.command("fire")
    @config_arg
    @click.argument("name")
    @errors_to_exit
    def fire_cmd(config: str, name: str) -> None:
        """Enqueue one run of schedule NAME now; prints its id. Its ticks are unchanged."""
        cfg = config_mod.load(config)
        with cfg.build_broker() as broker:
            scheduler = scheduler_for(cfg, broker)
            try:
                job_id = scheduler.fire_now(name)
            except KeyError:
                known = ", ".join(s.name for s in scheduler.schedules) or "none"
                raise ConfigError(
                    f"{config}: no schedule named {name!r} (known: {known})"
                ) from None
            finally:
                scheduler.close()
        click.echo(job_id)
