"""brokerq: background work that must not be lost.

The core: the message envelope, the Producer / DelayProducer / Source / Consumer / Broker
contracts, retries, middleware, config and the worker runtime. Backends live in
``brokerq.embedded`` (memory, sqlite), ``brokerq_kafka`` (kq) and ``brokerq_beanstalk`` (dq).
"""

import logging as _logging

from brokerq.broker import (
    Broker,
    Capabilities,
    Consumer,
    DeadLetter,
    DelayProducer,
    Delivery,
    JobInfo,
    Producer,
    Source,
    WorkerInfo,
)
from brokerq.config import WorkerConfig, load
from brokerq.errors import (
    BatchFailed,
    BrokerError,
    BrokerqError,
    ConfigError,
    ConnectionFailed,
    DecodeError,
    DeliveryError,
    Drop,
    DuplicateJob,
    MessageTooLarge,
    NotSupported,
    Retry,
    TimeLimitExceeded,
    WorkerCrashed,
)
from brokerq.handler import Handler
from brokerq.message import Message, new_id
from brokerq.middleware import LoggingMiddleware, Metrics, Middleware
from brokerq.outcome import Failure, Outcome
from brokerq.registry import broker_class
from brokerq.retry import RetryPolicy
from brokerq.schedule import FireStore, Schedule, Scheduler
from brokerq.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "BatchFailed",
    "Broker",
    "BrokerError",
    "BrokerqError",
    "Capabilities",
    "ConfigError",
    "ConnectionFailed",
    "Consumer",
    "DeadLetter",
    "DecodeError",
    "DelayProducer",
    "Delivery",
    "DeliveryError",
    "Drop",
    "DuplicateJob",
    "Failure",
    "FireStore",
    "Handler",
    "JobInfo",
    "LoggingMiddleware",
    "Message",
    "MessageTooLarge",
    "Metrics",
    "Middleware",
    "NotSupported",
    "Outcome",
    "Producer",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "Scheduler",
    "Source",
    "TimeLimitExceeded",
    "Worker",
    "WorkerConfig",
    "WorkerCrashed",
    "WorkerInfo",
    "__version__",
    "broker_class",
    "load",
    "new_id",
]

# A library never configures logging; without any handler Python would print WARNING and
# up to stderr by itself (its "last resort"), e.g. librdkafka's connection chatter in
# `brokerq check`. The CLI and applications configure handlers.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
