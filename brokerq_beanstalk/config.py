"""Configuration of the dq backend (go-queue ``DqConf``), validated by pydantic.

``DqConf`` is the ``dq:`` section of a worker YAML file. Durations are human (``5s``, ``500ms``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokerq.duration import Duration
from brokerq.retry import RetryPolicy
from brokerq.secrets import read_secret_file, register
from brokerq_beanstalk.protocol import UINT32_MAX, check_tube


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; raise ValueError when it is not that."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid beanstalkd endpoint {endpoint!r}: expected 'host:port'")
    return host.strip("[]"), int(port)


class Beanstalk(BaseModel):
    """One beanstalkd node and the tube the jobs live in (go-queue ``dq.Beanstalk``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(description="host:port of the beanstalkd node")
    tube: str = Field(description="tube name (beanstalkd's naming rule, see protocol.TUBE_RULE)")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        split_endpoint(value)
        return value

    @field_validator("tube")
    @classmethod
    def _check_tube(cls, value: str) -> str:
        return check_tube(value)


class SentinelConf(BaseModel):
    """Redis Sentinel: the master's name and the sentinels (``host:port``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str
    nodes: list[str] = Field(min_length=1)


class RedisConf(BaseModel):
    """Where the consume-once guard lives: a URL, or Sentinel, or a Cluster seed URL.

    TLS: a ``rediss://`` URL, ``tls: true``, ``ca_file`` or ``cert_file``; certificates and
    host names are verified unless ``ssl_check_hostname: false``. ACL users: ``username`` and
    ``password`` (or ``password_file``, or both in the URL).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "redis://127.0.0.1:6379/0"
    sentinel: SentinelConf | None = None
    cluster: bool = False
    prefix: str = Field(default="brokerq:dq:", description="prefix of every key the guard writes")
    username: str | None = Field(default=None, description="ACL user (default: the URL's)")
    password: str | None = Field(default=None, repr=False, description="(default: the URL's)")
    password_file: str | None = Field(default=None, description="file holding the password")
    tls: bool = Field(default=False, description="TLS with the system CAs (rediss:// implies it)")
    ca_file: str | None = Field(default=None, description="CA bundle (PEM); enables TLS")
    cert_file: str | None = Field(default=None, description="client certificate (PEM)")
    key_file: str | None = Field(default=None, description="client private key (PEM)")
    ssl_check_hostname: bool = Field(default=True, description="verify the server's host name")

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("password_file") is not None:
            if data.get("password") is not None:
                raise ValueError("give password or password_file, not both")
            data = {**data, "password": read_secret_file(str(data["password_file"]))}
        return data

    @model_validator(mode="after")
    def _register_secrets(self) -> RedisConf:
        register(self.password)
        register(urlsplit(self.url).password)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.ca_file or self.cert_file or self.url.startswith("rediss:"))


class DqConf(BaseModel):
    """Replicated delayed jobs on beanstalkd, consumed once thanks to Redis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beanstalks: list[Beanstalk] = Field(min_length=1)
    redis: RedisConf = Field(default_factory=RedisConf)
    concurrency: int = Field(
        default=8, ge=1, description="deprecated here: set concurrency at the top level"
    )
    ttr: Duration = Field(default=5.0, ge=2.0, description="beanstalkd time-to-run (touched)")
    priority: int = Field(
        default=2, ge=0, le=UINT32_MAX, description="default job priority (go-queue 2)"
    )
    retry: RetryPolicy | None = Field(
        default=None, description="deprecated here: set retry at the top level"
    )
    claim_ttl: Duration = Field(
        default=15.0, ge=1.0, description="lease of a running job; a dead worker's job reruns after"
    )
    done_ttl: Duration = Field(
        default=7 * 86400.0, ge=60.0, description="how long 'done' is remembered (outlive replicas)"
    )
    dead_ttl: Duration = Field(default=30 * 86400.0, ge=60.0, description="dead-letter records")
    keep_done: Duration = Field(
        default=3600.0, ge=0.0, description="how long Broker.job remembers a finished job (0: not)"
    )
    replicas: int = Field(default=3, ge=1, description="copies written per job")
    min_written: int = Field(default=2, ge=1, description="copies that must be written")
    goqueue_compat: bool = Field(
        default=False, description="produce go-queue bodies (<unix-nanos>/<payload>)"
    )

    @model_validator(mode="after")
    def _check_replicas(self) -> DqConf:
        if self.min_written > self.replicas:
            raise ValueError("min_written must not exceed replicas")
        endpoints = [b.endpoint for b in self.beanstalks]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("beanstalks: every endpoint must be different")
        return self
