"""``brokerq web CONFIG [CONFIG ...]``: the dashboard process (registered in brokerq.cli).

Starlette, Jinja2 and uvicorn are imported only when the command runs, so the rest of the
CLI works without the ``web`` extra; without it this command says how to install it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import NoReturn

import click

from brokerq.cli_common import log_level_choice
from brokerq.errors import BrokerqError, ConfigError
from brokerq.web.settings import TOKEN_ENV, WebSettings, check_bind

logger = logging.getLogger(__name__)

# the exit codes of brokerq.cli (not imported from there: cli imports this module)
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 3


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"brokerq: error: {message}", err=True)
    sys.exit(code)


@click.command("web")
# plain strings: a directory or a missing file is a config error (exit 3), as for every CONFIG
@click.argument("configs", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--auth-token",
    default=None,
    help=f"Require this token on every request. Needed off loopback. Prefer {TOKEN_ENV}: "
    "a flag shows in the process list.",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Allow retry / purge / pause / resume / revoke (POST + CSRF, audit-logged).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve a non-loopback address without a token (behind your own auth proxy only).",
)
@click.option(
    "--refresh",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.5, 86400),
    help="Overview refresh, seconds (0.5 to 86400).",
)
@click.option(
    "--sample-every",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.2, 86400),
    help="Seconds between chart samples (0.2 to 86400).",
)
@click.option("--log-level", default="INFO", show_default=True, type=log_level_choice)
def web(
    configs: tuple[str, ...],
    host: str,
    port: int,
    auth_token: str | None,
    allow_actions: bool,
    insecure_no_auth: bool,
    refresh: float,
    sample_every: float,
    log_level: str,
) -> None:
    """Serve a dashboard of the queues of CONFIG(s): counts, dead letters, jobs, workers.

    \b
    Safe by default: binds 127.0.0.1 and is read-only. Examples:
      brokerq web configs/demo.yaml configs/dq.yaml
      BROKERQ_WEB_TOKEN=s3cret brokerq web configs/*.yaml --host 0.0.0.0 --allow-actions
    """
    token = auth_token or os.environ.get(TOKEN_ENV) or None
    try:
        warning = check_bind(host, token, insecure_no_auth)
    except ConfigError as e:
        _fail(EXIT_CONFIG, str(e))
    try:
        import uvicorn

        from brokerq.web.app import create_app
        from brokerq.web.queues import open_queues
    except ImportError as e:
        _fail(EXIT_CONFIG, f"brokerq web needs the web extra: pip install 'brokerq[web]' ({e})")
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if warning:
        click.echo(warning, err=True)
    settings = WebSettings(
        host=host,
        port=port,
        token=token,
        allow_actions=allow_actions,
        refresh=refresh,
        sample_every=sample_every,
    )

    try:
        queues = open_queues(configs)
    except ConfigError as e:
        _fail(EXIT_CONFIG, str(e).replace("\n", "; "))
    except BrokerqError as e:
        _fail(EXIT_FAILURE, str(e))
    try:
        app = create_app(queues, settings)
        mode = "actions allowed" if allow_actions else "read-only"
        auth = "token required" if token else "no token"
        logger.info("brokerq web on http://%s:%d (%s, %s)", host, port, mode, auth)
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the
        # handler found before it: make that a no-op so a requested stop exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False)
    finally:
        for q in queues:
            q.close()
    sys.exit(EXIT_OK)
