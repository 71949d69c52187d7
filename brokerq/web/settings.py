"""What the dashboard is allowed to do, and the bind-address rule (no Starlette import here).

The rule, from issue 14 and asynqmon #78 (a dashboard with no authentication at all): a
dashboard reachable from other machines must ask for a token. ``check_bind`` enforces it
before anything listens.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from brokerq.errors import ConfigError

TOKEN_ENV = "BROKERQ_WEB_TOKEN"
"""Environment variable read when ``--auth-token`` is not given."""

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual loopback names; False for 0.0.0.0 and the rest."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure_no_auth: bool) -> str | None:
    """Refuse a non-loopback ``host`` without a token; return a warning line or None.

    Raises ConfigError (one line) when ``host`` is not loopback, no token is set and
    ``insecure_no_auth`` is False.
    """
    if is_loopback(host) or token:
        return None
    if insecure_no_auth:
        return (
            f"brokerq web: WARNING: serving {host} without authentication "
            "(--insecure-no-auth): anyone who can reach it can read your queues"
        )
    raise ConfigError(
        f"--host {host} is not a loopback address: set --auth-token (or {TOKEN_ENV}), "
        "or --insecure-no-auth behind your own authenticating proxy"
    )


@dataclass(frozen=True)
class WebSettings:
    """How the app behaves.

    ``token``: when set, every request needs it (Bearer header or the signed login cookie).
    ``allow_actions``: without it every state-changing request answers 403.
    ``refresh``: seconds between overview auto-refreshes. ``sample_every``: seconds between the
    samples kept for the charts; ``sample_keep``: seconds of samples kept.
    ``preview_bytes`` / ``payload_bytes``: payload bytes shown in lists / on a job page.
    ``call_timeout``: seconds a page waits for one broker call (then the broker is shown
    "slow"; brokerq.web.queues).
    ``secret``: signs cookies and CSRF tokens (random per process unless given).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    allow_actions: bool = False
    refresh: float = 5.0
    sample_every: float = 5.0
    sample_keep: float = 900.0
    preview_bytes: int = 160
    payload_bytes: int = 4096
    page_size: int = 50
    call_timeout: float = 2.0
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def trusted_hosts(self) -> list[str] | None:
        """Host headers accepted without a token (DNS-rebinding guard); None = any."""
        if self.token:
            return None
        hosts = ["127.0.0.1", "localhost", "[::1]", "::1"]
        if self.host not in hosts and self.host not in ("0.0.0.0", "::"):
            hosts.append(self.host)
        if self.host in ("0.0.0.0", "::"):
            return None  # --insecure-no-auth on every interface: the operator's proxy decides
        return hosts
