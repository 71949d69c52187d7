"""brokerq_kafka: go-queue's kq (Pusher, Queue, KqConf) done right, on confluent-kafka.

At-least-once consumption with in-order offset commits, retries and a dead-letter topic;
a durable, non-blocking Pusher whose failures are never silent.
"""

from brokerq_kafka.broker import KafkaBroker
from brokerq_kafka.config import KqConf
from brokerq_kafka.pusher import AsyncPusher, Pusher
from brokerq_kafka.queue import Queue
from brokerq_kafka.source import KafkaSource

__all__ = ["AsyncPusher", "KafkaBroker", "KafkaSource", "KqConf", "Pusher", "Queue"]
