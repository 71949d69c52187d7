"""Translate confluent-kafka errors into brokerq's error tree at the boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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
R = TypeVar("R")


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


def serving(call: Callable[..., R], *args: Any) -> R:
    """``call(*args)`` for a confluent-kafka call that serves callbacks (``flush``, ``poll``)
    on the caller's thread, with Ctrl-C kept.

    Python runs a signal's handler on the main thread at its next bytecode. When that is
    inside a callback librdkafka called from ``flush()`` (a log line, a delivery report),
    confluent-kafka drops the KeyboardInterrupt and the call fails with "SystemError: ...
    returned NULL without setting an exception". That SystemError is raised here as the
    KeyboardInterrupt it was; any other stays what it is.
    """
    try:
        return call(*args)
    except SystemError as e:
        if LOST_EXCEPTION in str(e):
            raise KeyboardInterrupt from None
        raise


LOST_EXCEPTION = "returned NULL without setting an exception"  # CPython's wording
