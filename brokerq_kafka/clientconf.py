"""Every Kafka client's librdkafka config, built in one place with one precedence.

``defaults < client_config < guarantees``: brokerq's defaults (batching, compression, fetch
sizes), then the user's ``client_config`` pass-through (librdkafka's CONFIGURATION.md), then
the settings brokerq's promises rest on. A ``client_config`` key that would weaken one of
those promises is a ``ConfigError`` naming the key, never a silent override:

- durable writers (Pushers with ``acks="all"``, dead-letter and retry writers):
  ``acks`` all and ``enable.idempotence`` true;
- consumers: ``enable.auto.commit`` and ``enable.auto.offset.store`` false (brokerq commits
  only finished offsets);
- callbacks brokerq installs (``on_delivery``, ``error_cb``, ``on_commit``, ``logger``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from brokerq.errors import ConfigError
from brokerq_kafka.rdlog import LIBRDKAFKA_LOG, LIBRDKAFKA_LOGGER

__all__ = ["LIBRDKAFKA_LOGGER", "Role", "build", "security_config"]

Role = Literal["durable", "producer", "consumer", "reader", "admin"]

DURABLE: dict[str, Any] = {"acks": "all", "enable.idempotence": True}
MANUAL_COMMIT: dict[str, Any] = {"enable.auto.commit": False, "enable.auto.offset.store": False}
_CALLBACKS = ("on_delivery", "error_cb", "on_commit", "logger", "stats_cb")
_GUARANTEES: dict[str, dict[str, Any]] = {
    "durable": DURABLE,
    "producer": {},
    "consumer": MANUAL_COMMIT,
    "reader": MANUAL_COMMIT,
    "admin": {},
}


def _same(key: str, have: Any, want: Any) -> bool:
    if key == "acks":
        return str(have).strip().lower() in ("all", "-1")
    if isinstance(want, bool):
        return str(have).strip().lower() in (("true", "1") if want else ("false", "0"))
    return bool(have == want)


def build(
    role: Role,
    *,
    bootstrap: str,
    user: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    security: Mapping[str, Any] | None = None,
    internal: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config for one client: ``bootstrap`` + ``security`` + ``defaults``, then ``user``,
    then the role's guarantees and brokerq's ``internal`` keys (callbacks, group id).

    Raises ConfigError naming the ``client_config`` key that would weaken a guarantee or
    replace a callback brokerq relies on.
    """
    user = dict(user or {})
    guarantees = dict(_GUARANTEES[role])
    for key, value in user.items():
        if key in guarantees and not _same(key, value, guarantees[key]):
            raise ConfigError(
                f"kq client_config: {key}={value!r} would weaken a guarantee "
                f"({key} must be {guarantees[key]!r} for this client); remove the key"
            )
        if key in _CALLBACKS or (internal is not None and key in internal):
            raise ConfigError(f"kq client_config: {key!r} is set by brokerq; remove the key")
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOG}
    conf.update(security or {})
    conf.update(defaults or {})
    conf.update(user)
    conf.update(guarantees)
    conf.update(internal or {})
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
