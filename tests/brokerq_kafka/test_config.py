"""Bad configuration fails early with errors that name the problem."""

from __future__ import annotations

import re
import time

import pytest
from pydantic import ValidationError

from brokerq.errors import ConfigError, ConnectionFailed, DeliveryError
from brokerq_kafka import KafkaBroker, KqConf, Pusher

UNREACHABLE = "127.0.0.1:1"


def test_brokers_required_and_split() -> None:
    with pytest.raises(ValidationError, match="brokers"):
        KqConf(brokers=[], topic="t")
    with pytest.raises(ValidationError, match="brokers"):
        KqConf(brokers=" , ", topic="t")
    conf = KqConf(brokers="a:9092, b:9092", topic="t")
    assert conf.brokers == ["a:9092", "b:9092"]
    assert conf.dead_letter_topic == "t.dlq"


def test_unknown_offset_and_unknown_key() -> None:
    with pytest.raises(ValidationError, match="offset"):
        KqConf(brokers="a:1", topic="t", offset="middle")
    with pytest.raises(ValidationError, match="procesors"):
        KafkaBroker.from_config({"brokers": "a:1", "topic": "t", "procesors": 3})


def test_config_maps_onto_librdkafka() -> None:
    conf = KqConf(
        brokers="a:1",
        topic="t",
        offset="first",
        min_bytes=10,
        max_bytes=1 << 20,
        username="u",
        password="p",
        sasl_mechanism="SCRAM-SHA-512",
        ca_file="/ca.pem",
        processors=8,
        client_config={"fetch.wait.max.ms": 50},
    )
    c = conf.consumer_config()
    assert c["auto.offset.reset"] == "earliest"
    assert c["fetch.min.bytes"] == 10 and c["fetch.max.bytes"] == 1 << 20
    assert c["security.protocol"] == "SASL_SSL" and c["sasl.mechanism"] == "SCRAM-SHA-512"
    assert c["ssl.ca.location"] == "/ca.pem"
    assert c["fetch.wait.max.ms"] == 50
    assert c["enable.auto.commit"] is False
    broker = KafkaBroker(conf)
    assert broker.worker_options() == {"concurrency": 8}  # written: the deprecated key
    assert KafkaBroker(KqConf(brokers="a:1", topic="t")).worker_options() == {}


@pytest.mark.parametrize(
    ("key", "value", "build"),
    [
        ("enable.auto.commit", True, "source"),
        ("enable.auto.offset.store", "true", "source"),
        ("acks", 1, "producer"),
        ("acks", "0", "dead-letter writer"),
        ("enable.idempotence", False, "producer"),
    ],
)
def test_client_config_cannot_weaken_a_guarantee(key: str, value: object, build: str) -> None:
    """defaults < client_config < guarantees: a weakening key is an error naming it."""
    conf = KqConf(brokers=UNREACHABLE, topic="t", client_config={key: value})
    broker = KafkaBroker(conf)
    with pytest.raises(ConfigError, match=re.escape(key)):
        if build == "source":
            broker.source()
        elif build == "producer":
            broker.producer()
        else:
            conf.writer_config()


def test_client_config_overrides_defaults_but_keeps_guarantees() -> None:
    conf = KqConf(
        brokers="a:1", topic="t", client_config={"acks": "all", "compression.type": "zstd"}
    )
    w = conf.writer_config()
    assert w["compression.type"] == "zstd" and w["enable.idempotence"] is True
    c = conf.consumer_config()
    assert c["partition.assignment.strategy"] == "range"
    custom = KqConf(
        brokers="a:1",
        topic="t",
        client_config={"partition.assignment.strategy": "cooperative-sticky"},
    )
    assert custom.consumer_config()["partition.assignment.strategy"] == "cooperative-sticky"
    with pytest.raises(ConfigError, match="on_delivery"):
        KqConf(brokers="a:1", topic="t", client_config={"on_delivery": print}).writer_config()


def test_unknown_client_config_key_is_a_config_error() -> None:
    conf = KqConf(brokers=UNREACHABLE, topic="t", client_config={"no.such.key": 1})
    with pytest.raises(ConfigError, match=r"no\.such\.key"):
        KafkaBroker(conf).source()
    with pytest.raises(ConfigError, match=r"no\.such\.key"):
        KafkaBroker(conf).producer()


def test_check_names_unreachable_brokers() -> None:
    broker = KafkaBroker(KqConf(brokers=UNREACHABLE, topic="t"))
    start = time.monotonic()
    with pytest.raises(ConnectionFailed, match=UNREACHABLE):
        broker.check()
    assert time.monotonic() - start < 10
    broker.close()


def test_sync_push_to_unreachable_broker_fails_within_push_timeout() -> None:
    pusher = Pusher(UNREACHABLE, "t", sync=True, push_timeout=1.5)
    start = time.monotonic()
    with pytest.raises(DeliveryError):
        pusher.push(b"x")
    assert time.monotonic() - start <= 1.6
    pusher.close()


@pytest.mark.integration
def test_check_passes(kafka_bootstrap: str) -> None:
    with KafkaBroker(KqConf(brokers=kafka_bootstrap, topic="t")) as broker:
        broker.check()


def test_pause_scope_names_topic_and_group() -> None:
    # `brokerq pause` prints this: it once said "kafka", naming neither what was paused
    broker = KafkaBroker(KqConf(brokers="a:9092", topic="orders", group="billing"))
    assert broker.pause_scope == "topic orders, group billing"
