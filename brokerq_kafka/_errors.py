"""Translate confluent-kafka errors into brokerq's error tree at the boundary."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from brokerq.errors import (
    BrokerError,
    ConfigError,
    ConnectionFailed,
    DeliveryError,
    MessageTooLarge,
)

_CONNECTION = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError.SASL_AUTHENTICATION_FAILED,
}
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE}


def kafka_error(e: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException (or the error itself)."""
    if isinstance(e, KafkaError):
        return e
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


def translate(
    e: BaseException, context: str, default: type[BrokerError] = BrokerError
) -> Exception:
    """The brokerq exception for a driver error, its message prefixed with ``context``."""
    err = kafka_error(e)
    text = err.str() if err is not None else str(e)
    code: Any = err.code() if err is not None else None
    if code == KafkaError._INVALID_ARG or isinstance(e, ValueError):
        return ConfigError(f"{context}: {text}")
    if code in _TOO_LARGE:
        return MessageTooLarge(f"{context}: {text}")
    if code in _CONNECTION:
        return ConnectionFailed(f"{context}: {text}")
    if default is DeliveryError:
        return DeliveryError(f"{context}: {text}")
    return default(f"{context}: {text}")
