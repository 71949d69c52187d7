"""``KqConf``: the kq config section (go-queue names), and how it maps onto librdkafka keys.

Native librdkafka options go through ``client_config`` unchanged; everything else is
validated here so a typo fails at load time, not at the first message.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokerq.duration import Duration
from brokerq.retry import RetryPolicy
from brokerq.secrets import read_secret_file, register

LIBRDKAFKA_LOGGER = logging.getLogger("brokerq_kafka.librdkafka")


class KqConf(BaseModel):
    """A Kafka queue: where to read and write, how to authenticate, how many processors."""

    model_config = ConfigDict(extra="forbid")

    brokers: list[str] = Field(description="bootstrap servers: a list or a comma-joined string")
    group: str = Field(default="brokerq", min_length=1, description="consumer group id")
    topic: str = Field(min_length=1)
    offset: Literal["first", "last"] = Field(
        default="last", description="where a group with no committed offset starts"
    )
    conns: int = Field(default=1, ge=1, description="consumers (sources) per Queue")
    processors: int = Field(default=8, ge=1, description="handler threads per consumer")
    min_bytes: int | None = Field(default=None, ge=1, description="fetch.min.bytes")
    max_bytes: int | None = Field(default=None, ge=1, description="fetch.max.bytes")
    username: str | None = Field(default=None, description="SASL user")
    password: str | None = Field(default=None, repr=False, description="SASL password")
    password_file: str | None = Field(
        default=None, description="file holding the SASL password (instead of password)"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    ca_file: str | None = Field(default=None, description="CA bundle (PEM); enables TLS")
    cert_file: str | None = Field(default=None, description="client certificate (PEM); TLS")
    key_file: str | None = Field(default=None, description="client private key (PEM)")
    tls: bool | None = Field(
        default=None, description="TLS with the system CAs; implied by ca_file / cert_file"
    )
    ssl_check_hostname: bool = Field(
        default=True, description="verify the broker's host name against its certificate"
    )
    key_ordering: bool = Field(
        default=False, description="same key: never concurrently, always in order"
    )
    dead_letter_topic: str = Field(default="", description="default <topic>.dlq")
    client_config: dict[str, Any] = Field(
        default_factory=dict, description="librdkafka keys passed straight through"
    )
    retry: RetryPolicy | None = None
    push_timeout: Duration = Field(default=10.0, gt=0, description="bound on any wait in push")
    chunk_size: int | None = Field(default=None, ge=1, description="batch.size in bytes")
    flush_interval: Duration | None = Field(default=None, description="linger.ms")
    commit_interval: Duration = Field(default=1.0, gt=0, description="how often offsets commit")

    @field_validator("brokers", mode="before")
    @classmethod
    def _split_brokers(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            value = [str(v).strip() for v in value if str(v).strip()]
            if not value:
                raise ValueError("brokers must name at least one host:port")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> KqConf:
        if not self.dead_letter_topic:
            self.dead_letter_topic = f"{self.topic}.dlq"
        if self.dead_letter_topic == self.topic:
            raise ValueError("dead_letter_topic must differ from topic")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file)
        register(self.password)
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password (or password_file) must be given together")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self

    def security(self) -> dict[str, Any]:
        """The SASL / TLS librdkafka keys of this section (see ``security_config``)."""
        return security_config(
            self.username,
            self.password,
            self.sasl_mechanism,
            self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            tls=self.tls,
            check_hostname=self.ssl_check_hostname,
        )

    # -- librdkafka mapping ---------------------------------------------------------------
    def common_config(self) -> dict[str, Any]:
        """Bootstrap, security and logging keys shared by producers and consumers."""
        conf: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.brokers),
            "logger": LIBRDKAFKA_LOGGER,
        }
        conf.update(self.security())
        return conf

    def producer_options(self) -> dict[str, Any]:
        """Keyword options for ``Pusher`` implied by this section."""
        config = dict(self.client_config)
        config.update(self.security())
        options: dict[str, Any] = {"push_timeout": self.push_timeout, "config": config}
        if self.chunk_size is not None:
            options["chunk_size"] = self.chunk_size
        if self.flush_interval is not None:
            options["flush_interval"] = self.flush_interval
        return options

    def consumer_config(self) -> dict[str, Any]:
        """The librdkafka consumer config: manual offset store and commit (at-least-once)."""
        conf = self.common_config()
        conf.update(
            {
                "group.id": self.group,
                "auto.offset.reset": "earliest" if self.offset == "first" else "latest",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        if self.min_bytes is not None:
            conf["fetch.min.bytes"] = self.min_bytes
        if self.max_bytes is not None:
            conf["fetch.max.bytes"] = self.max_bytes
        conf.update(self.client_config)
        # These two carry the delivery guarantee; client_config may not turn them back on.
        conf["enable.auto.commit"] = False
        conf["enable.auto.offset.store"] = False
        return conf


def security_config(
    username: str | None,
    password: str | None,
    mechanism: str,
    ca_file: str | None,
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
    tls: bool | None = None,
    check_hostname: bool = True,
) -> dict[str, Any]:
    """SASL (PLAIN / SCRAM) and TLS keys.

    TLS is on with ``tls`` or when a CA or client certificate is given; it always verifies the
    broker's certificate (``enable.ssl.certificate.verification``) and, unless
    ``check_hostname`` is False, its host name (``ssl.endpoint.identification.algorithm=https``).
    """
    conf: dict[str, Any] = {}
    use_tls = bool(tls) if tls is not None else bool(ca_file or cert_file)
    if username is not None:
        conf["security.protocol"] = "SASL_SSL" if use_tls else "SASL_PLAINTEXT"
        conf["sasl.mechanism"] = mechanism
        conf["sasl.username"] = username
        conf["sasl.password"] = password
    elif use_tls:
        conf["security.protocol"] = "SSL"
    if use_tls:
        conf["enable.ssl.certificate.verification"] = True
        conf["ssl.endpoint.identification.algorithm"] = "https" if check_hostname else "none"
    if ca_file:
        conf["ssl.ca.location"] = ca_file
    if cert_file:
        conf["ssl.certificate.location"] = cert_file
        conf["ssl.key.location"] = key_file
    return conf
