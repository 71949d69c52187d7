"""What every ``brokerq`` command shares: named exit codes, one-line errors, opening the
configured broker. Command modules (ours and those registered in brokerq.cli with
``main.add_command``) import these from here, so nothing imports brokerq.cli back.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from brokerq import config as config_mod
from brokerq import registry
from brokerq.broker import Broker
from brokerq.duration import parse_duration
from brokerq.errors import BrokerError, BrokerqError, ConfigError, DuplicateJob, NotSupported
from brokerq.secrets import mask

EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected error
EXIT_USAGE = 2  # bad command line (click)
EXIT_CONFIG = 3  # invalid config, handler or input value
EXIT_BROKER = 4  # broker unreachable or refused the operation
EXIT_UNSUPPORTED = 5  # the broker cannot do this
EXIT_NOT_FOUND = 6  # revoke / dead --ref / job: no such job or dead letter
EXIT_DUPLICATE = 7  # push / delay / at --id: a job with that id is live or still reserved
EXIT_INTERRUPTED = 130  # second signal: exit at once

F = TypeVar("F", bound=Callable[..., Any])


def fail(code: int, message: str) -> None:
    """Print ``brokerq: error: message`` on stderr and exit with ``code``."""
    click.echo(f"brokerq: error: {mask(message)}", err=True)
    sys.exit(code)


def errors_to_exit(fn: F) -> F:
    """Turn brokerq errors into one line on stderr and a named exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            fail(EXIT_CONFIG, str(e).replace("\n", "; "))
        except NotFound as e:
            fail(EXIT_NOT_FOUND, str(e))
        except NotSupported as e:
            fail(EXIT_UNSUPPORTED, str(e))
        except DuplicateJob as e:
            fail(EXIT_DUPLICATE, str(e))
        except BrokerError as e:
            fail(EXIT_BROKER, str(e))
        except BrokerqError as e:
            fail(EXIT_FAILURE, str(e))
        except ValueError as e:
            fail(EXIT_CONFIG, str(e))

    return wrapper  # type: ignore[return-value]


class NotFound(BrokerqError):
    """What a command was asked to act on does not exist (exit EXIT_NOT_FOUND)."""


def load_config(path: str) -> config_mod.WorkerConfig:
    """The config at ``path``; ConfigError when its broker lives inside one process (a
    command's pushes would vanish when it exits)."""
    cfg = config_mod.load(path)
    cls = registry.broker_class(cfg.broker_name)
    if getattr(cls, "in_process", False):
        raise ConfigError(
            f"{path}: the {cfg.broker_name} broker keeps its jobs inside one process, so "
            "brokerq commands cannot reach it (what they push would vanish when they exit); "
            "use it from Python (tests, one program), or a broker with storage such as "
            "embedded backend: sqlite"
        )
    return cfg


@contextmanager
def opened(path: str) -> Iterator[tuple[config_mod.WorkerConfig, Broker]]:
    """The config at ``path`` and its broker (not connected yet), closed on exit."""
    cfg = load_config(path)
    with cfg.build_broker() as broker:
        yield cfg, broker


# A plain string: config.load reports a missing file or a directory as one line (exit 3);
# every command taking a CONFIG uses this one (click.Path would make a directory exit 2).
config_arg = click.argument("config")


class OneLineErrors(click.Group):
    """Usage errors as one line too (``brokerq: error: ... (see brokerq run --help)``, exit 2)
    instead of click's usage block."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "brokerq"
            fail(EXIT_USAGE, f"{e.format_message()} (see {where} --help)")
        except click.ClickException as e:
            fail(e.exit_code, e.format_message())
        except click.Abort:
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# --log-level of every command: one of LOG_LEVELS, any case (anything else exits 2, one line)
log_level_choice = click.Choice(LOG_LEVELS, case_sensitive=False)


def duration_option(value: str, option: str, minimum: float = 0.0) -> float:
    """Seconds for a duration option (``500ms``, ``5s``, ``1m``); a bad value or one below
    ``minimum`` seconds is a usage error naming ``option`` (one line, EXIT_USAGE)."""
    ctx = click.get_current_context(silent=True)
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param_hint=f"'{option}'") from None
    if seconds < minimum:
        raise click.BadParameter(
            f"{value!r} is shorter than the minimum {minimum:g}s", ctx=ctx, param_hint=f"'{option}'"
        )
    return seconds
