"""``KqConf``: the kq config section (go-queue names), and how it maps onto librdkafka keys.

Native librdkafka options go through ``client_config`` unchanged; everything else is
validated here so a typo fails at load time, not at the first message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokerq.duration import Duration
from brokerq.retry import RetryPolicy
from brokerq.secrets import read_secret_file, register
from brokerq_kafka import clientconf
from brokerq_kafka.clientconf import LIBRDKAFKA_LOGGER, security_config

__all__ = ["DEFAULT_RETRY_TIERS", "LIBRDKAFKA_LOGGER", "KqConf", "security_config"]

#: Backoff tiers, in seconds: one retry topic ``<topic>.retry.<seconds>`` each.
DEFAULT_RETRY_TIERS = (1.0, 10.0, 60.0, 600.0, 3600.0)


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
    retry_tiers: list[Duration] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_TIERS),
        min_length=1,
        description="backoff tiers: a retry topic <topic>.retry.<seconds> per tier",
    )

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
        self.retry_tiers = sorted({float(t) for t in self.retry_tiers})
        if self.retry_tiers[0] < 0:
            raise ValueError("retry_tiers must not be negative")
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

    # -- librdkafka mapping (brokerq_kafka.clientconf: defaults < client_config < guarantees) --
    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

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

    def producer_options(self) -> dict[str, Any]:
        """Keyword options for ``Pusher`` implied by this section."""
        options: dict[str, Any] = {
            "push_timeout": self.push_timeout,
            "config": dict(self.client_config),
            "security": self.security(),
        }
        if self.chunk_size is not None:
            options["chunk_size"] = self.chunk_size
        if self.flush_interval is not None:
            options["flush_interval"] = self.flush_interval
        return options

    def consumer_config(self, **internal: Any) -> dict[str, Any]:
        """The librdkafka consumer config: manual offset store and commit (at-least-once).

        ConfigError when ``client_config`` would turn auto-commit back on."""
        defaults: dict[str, Any] = {
            "auto.offset.reset": "earliest" if self.offset == "first" else "latest",
            # range: partition N of the main topic and of each retry topic go to the same
            # member, so load splits per topic and a key's retry stays with its partition.
            "partition.assignment.strategy": "range",
        }
        if self.min_bytes is not None:
            defaults["fetch.min.bytes"] = self.min_bytes
        if self.max_bytes is not None:
            defaults["fetch.max.bytes"] = self.max_bytes
        return clientconf.build(
            "consumer",
            bootstrap=self.bootstrap,
            user=self.client_config,
            defaults=defaults,
            security=self.security(),
            internal={"group.id": self.group, **internal},
        )

    def reader_config(self, group: str, **internal: Any) -> dict[str, Any]:
        """A consumer that never subscribes nor commits by itself (metadata, admin groups)."""
        return clientconf.build(
            "reader",
            bootstrap=self.bootstrap,
            user=self.client_config,
            defaults={"enable.partition.eof": False},
            security=self.security(),
            internal={"group.id": group, **internal},
        )

    def client(
        self,
        role: clientconf.Role,
        defaults: dict[str, Any] | None = None,
        internal: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Any other client's config (schedules, admin clients): ``defaults`` <
        ``client_config`` < the role's guarantees < ``internal`` (brokerq_kafka.clientconf)."""
        conf = clientconf.build(
            role,
            bootstrap=self.bootstrap,
            user=self.client_config,
            defaults=defaults,
            security=self.security(),
            internal=internal,
        )
        if role == "admin":
            conf.pop("logger", None)
        return conf

    def writer_config(self, **internal: Any) -> dict[str, Any]:
        """A durable producer (dead letters, retry records): acks=all, idempotent."""
        return clientconf.build(
            "durable",
            bootstrap=self.bootstrap,
            user=self.client_config,
            defaults={"compression.type": "lz4", "linger.ms": 1},
            security=self.security(),
            internal=internal,
        )
