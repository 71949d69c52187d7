"""The ``metrics:`` section of a worker YAML file (Prometheus exporter and health endpoints).

YAML::

    metrics:
      listen: "127.0.0.1:9464"   # host:port; a bare port (or ":9464") stays on 127.0.0.1
      certfile: /etc/brokerq/tls.crt   # both given: HTTPS
      keyfile: /etc/brokerq/tls.key
      cache: 5s                  # broker state (stats()) is fetched at most this often
      scrape_timeout: 2s         # a scrape never waits longer than this for the broker
      sample: 1                  # time 1 message in N for the age and duration histograms
      stuck_after: 35m           # /healthz fails when one handler has run longer than this
                                 # (default: the worker's time_limit + grace + 30s; none
                                 # without a time limit)

Only loopback is the default: the exporter listens on another interface only when that
address is written out (``0.0.0.0:9464``, ``10.0.0.5:9464``, ``[::]:9464``). An exporter that
listens on every interface by default is the mistake dramatiq #309 describes.

This module needs pydantic only, so that ``brokerq.config`` can validate the section without
prometheus-client installed; ``brokerq run`` then says which extra to install.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokerq.duration import Duration

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464  # the port prometheus_client's examples use for Python exporters


def parse_listen(listen: str | int) -> tuple[str, int]:
    """``(host, port)`` for a listen address; raise ValueError naming what is wrong.

    ``"9464"``, ``":9464"`` and ``9464`` mean 127.0.0.1:9464; ``"[::1]:9464"`` is IPv6.
    The host is returned as written (a name such as ``localhost`` is resolved by the server).
    """
    text = str(listen).strip()
    if not text:
        raise ValueError("listen: empty address; write host:port, e.g. 127.0.0.1:9464")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif host.count(":") > 0:
        raise ValueError(f"listen: {text!r}: write IPv6 addresses in brackets, e.g. [::1]:9464")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"listen: {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"listen: {text!r}: port must be between 0 and 65535")
    return host or DEFAULT_HOST, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsConf(BaseModel):
    """Settings of the Prometheus exporter that ``brokerq run`` starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field(
        default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        description="host:port to serve /metrics, /healthz, /readyz on; loopback unless written",
    )
    certfile: str | None = Field(default=None, description="PEM certificate: serve HTTPS")
    keyfile: str | None = Field(default=None, description="PEM private key for certfile")
    cache: Duration = Field(default=5.0, description="how long broker state is reused")
    scrape_timeout: Duration = Field(
        default=2.0, description="longest a scrape or /readyz waits for the broker"
    )
    sample: int = Field(
        default=1,
        ge=1,
        description="time one message in N (per worker thread) for the age and duration "
        "histograms; counters, in-flight and delayed-job lateness stay exact",
    )
    stuck_after: Duration | None = Field(
        default=None,
        description="/healthz fails when a handler runs longer than this "
        "(default: the worker's time_limit + time_limit_grace + 30s)",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("listen: expected host:port, e.g. 127.0.0.1:9464")
        host, port = parse_listen(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("scrape_timeout", "stuck_after")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be more than 0s")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> MetricsConf:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together (both, or neither)")
        return self

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def tls(self) -> bool:
        return self.certfile is not None
