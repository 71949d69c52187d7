"""``brokerq check`` for kq: can the brokers be reached, and does the topic exist (or will the
broker create it on the first push)? Functions of a ``KqConf``, used by ``KafkaBroker``."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from brokerq.errors import ConnectionFailed
from brokerq.tls import handshake_error
from brokerq_kafka._errors import translate
from brokerq_kafka.config import KqConf

logger = logging.getLogger(__name__)


def check(conf: KqConf, missing_topic: Callable[[], str | None]) -> None:
    """ConnectionFailed naming the bootstrap servers and the reason (TLS, SASL, no answer
    within 5 s), or when ``missing_topic()`` reports a problem and the broker would not create
    the topic on the first push; a topic it will create is logged as a warning."""
    reasons: list[KafkaError] = []
    config = conf.reader_config(conf.group, error_cb=reasons.append)
    try:
        client = Consumer(config)
    except (KafkaException, ValueError, TypeError) as e:
        raise translate(e, f"kafka client config for {conf.topic!r}") from e
    try:
        client.list_topics(timeout=5)
    except KafkaException as e:
        client.poll(0.1)  # serves error_cb: the TLS or SASL failure, if there was one
        raise ConnectionFailed(f"kafka {','.join(conf.brokers)}: {why(conf, e, reasons)}") from e
    finally:
        client.close()
    problem = missing_topic()
    if problem is None:
        return
    if auto_creates_topics(conf) is False:
        raise ConnectionFailed(problem + ": create it")
    logger.warning("%s", problem)


def why(conf: KqConf, e: KafkaException, reasons: list[KafkaError]) -> str:
    """One line: librdkafka's first specific error, made precise for TLS failures."""
    specific = [r for r in reasons if r.code() != KafkaError._ALL_BROKERS_DOWN]
    if not specific:
        return f"no answer within 5s: {e}"
    text = str(specific[0].str()).split(" (after ")[0]
    tls = str(conf.security().get("security.protocol", "")).endswith("SSL")
    if tls and ("SSL" in text or "certificate" in text):
        # librdkafka says "certificate verify failed" for every cause: ask OpenSSL why
        where = re.search(r"://([^/\s]+):(\d+)/", text)
        host, port = (where.group(1), where.group(2)) if where else conf.brokers[0].rsplit(":", 1)
        precise = handshake_error(
            host.strip("[]"),
            int(port),
            ca_file=conf.ca_file,
            cert_file=conf.cert_file,
            key_file=conf.key_file,
            check_hostname=conf.ssl_check_hostname,
        )
        if precise:
            return f"{host}:{port}: {precise}"
    return text


def missing_topic(conf: KqConf, client: Any) -> str | None:
    """What is wrong with the topic (it does not exist yet, and whether the broker will create
    it on the first push), or None when it exists; ``client``: a confluent Consumer for
    metadata. ConnectionFailed when no broker answers within 5 s."""
    try:
        md = client.list_topics(timeout=5)
    except KafkaException as e:
        raise ConnectionFailed(f"kafka {','.join(conf.brokers)}: no answer within 5s: {e}") from e
    topic = md.topics.get(conf.topic)
    if topic is not None and topic.error is None:
        return None
    how = {
        True: "the broker creates it on the first push",
        False: "the broker does not create topics on first use (auto.create.topics.enable=false)",
        None: "whether the broker creates it on first use is unknown",
    }[auto_creates_topics(conf)]
    return f"kafka topic {conf.topic!r} does not exist yet: {how}"


def auto_creates_topics(conf: KqConf) -> bool | None:
    """The brokers' ``auto.create.topics.enable`` (None when it cannot be read)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._config import ConfigResource

    try:
        admin = AdminClient(conf.reader_config(f"{conf.group}.admin"))
        md = admin.list_topics(timeout=5)
        broker_id = next(iter(md.brokers))
        res = ConfigResource(ConfigResource.Type.BROKER, str(broker_id))
        entries = admin.describe_configs([res])[res].result(timeout=5)
        value = entries["auto.create.topics.enable"].value
        return str(value).lower() == "true"
    except Exception:
        return None
