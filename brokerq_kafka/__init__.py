"""brokerq_kafka: go-queue's kq (Pusher, Queue, KqConf) done right, on confluent-kafka.

At-least-once consumption with in-order offset commits, retries and a dead-letter topic;
a durable, non-blocking Pusher whose failures are never silent.
"""

import logging as _logging

from brokerq_kafka.broker import KafkaBroker
from brokerq_kafka.config import KqConf
from brokerq_kafka.pusher import AsyncPusher, Pusher
from brokerq_kafka.queue import Queue
from brokerq_kafka.source import KafkaSource

__all__ = ["AsyncPusher", "KafkaBroker", "KafkaSource", "KqConf", "Pusher", "Queue"]

# A library never configures logging; without any handler Python would print WARNING and
# up to stderr by itself (its "last resort"), e.g. librdkafka's connection chatter in
# `brokerq check`. The CLI and applications configure handlers.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
