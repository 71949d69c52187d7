"""brokerq_kafka: go-queue's kq (Pusher, Queue, KqConf) done right, on confluent-kafka.

At-least-once consumption with in-order offset commits, retry topics and a dead-letter
topic; a durable, non-blocking Pusher whose failures are never silent. ``Queue`` and
``Pusher`` keep go-queue's names; both are built from ``KafkaBroker``.
"""

import logging as _logging

from brokerq_kafka.asyncpusher import AsyncPusher
from brokerq_kafka.broker import KafkaBroker
from brokerq_kafka.config import KqConf
from brokerq_kafka.pusher import Pusher
from brokerq_kafka.queue import Queue

__all__ = ["AsyncPusher", "KafkaBroker", "KqConf", "Pusher", "Queue"]

# A library never configures logging; without any handler Python would print WARNING and
# up to stderr by itself (its "last resort"), e.g. librdkafka's connection chatter in
# `brokerq check`. The CLI and applications configure handlers.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
