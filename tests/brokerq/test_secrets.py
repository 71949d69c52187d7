"""brokerq.secrets: URL and registered secrets masked as ***, password_file, the logging filter,
and the config models that must never show a password (repr, errors)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from brokerq.config import loads
from brokerq.errors import ConfigError
from brokerq.secrets import MaskingFilter, mask, mask_url, read_secret_file, register
from brokerq_beanstalk.config import RedisConf
from brokerq_kafka.config import KqConf


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://app:s3cr%40t@cache:6380/0", "rediss://app:***@cache:6380/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("https://ghp_token@host/x", "https://***@host/x"),
        ("amqp://h/vhost?password=pw&x=1", "amqp://h/vhost?password=***&x=1"),
        ("sasl.password: pw2 and token=abc", "sasl.password: *** and token=***"),
        ("see redis://u:p@a:1 and kafka://x:y@b:2", "see redis://u:***@a:1 and kafka://x:***@b:2"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_registered_secret_is_masked_anywhere() -> None:
    register("hunter2-registered")
    assert mask("auth with hunter2-registered failed") == "auth with *** failed"
    register("")  # ignored
    register(None)
    assert mask("nothing here") == "nothing here"


def test_read_secret_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-a-file-123\n")
    assert read_secret_file(str(f)) == "from-a-file-123"
    assert mask("x from-a-file-123 y") == "x *** y"
    with pytest.raises(ValueError, match="cannot read password_file") as e:
        read_secret_file(str(tmp_path / "missing"))
    assert "from-a-file" not in str(e.value)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_secret_file(str(tmp_path / "empty"))


def test_masking_filter_masks_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    register("filter-secret-9")
    log = logging.getLogger("tests.secrets")
    caplog.handler.addFilter(MaskingFilter())
    try:
        log.warning("connecting with %s to %s", "filter-secret-9", "redis://u:pw@h:1")
        try:
            raise RuntimeError("boom filter-secret-9")
        except RuntimeError:
            log.exception("failed")
    finally:
        caplog.handler.filters.clear()
    assert "filter-secret-9" not in caplog.text
    assert "redis://u:***@h:1" in caplog.text
    assert "boom ***" in caplog.text


def test_kq_password_file_and_repr(tmp_path: Path) -> None:
    f = tmp_path / "kafka.pw"
    f.write_text("kq-secret-77\n")
    conf = KqConf(brokers="b:9093", topic="t", username="u", password_file=str(f), ca_file="ca")
    assert conf.password == "kq-secret-77"
    assert "kq-secret-77" not in repr(conf)
    sec = conf.security()
    assert sec["security.protocol"] == "SASL_SSL"
    assert sec["sasl.password"] == "kq-secret-77"
    assert sec["ssl.endpoint.identification.algorithm"] == "https"
    with pytest.raises(ValidationError, match="not both"):
        KqConf(brokers="b:1", topic="t", username="u", password="x", password_file=str(f))
    with pytest.raises(ValidationError, match="together"):
        KqConf(brokers="b:1", topic="t", cert_file="c.pem")


def test_kq_tls_keys() -> None:
    conf = KqConf(
        brokers="b:1",
        topic="t",
        cert_file="c.pem",
        key_file="k.pem",
        ssl_check_hostname=False,
    )
    sec = conf.security()
    assert sec["security.protocol"] == "SSL"
    assert sec["ssl.certificate.location"] == "c.pem"
    assert sec["ssl.key.location"] == "k.pem"
    assert sec["ssl.endpoint.identification.algorithm"] == "none"
    assert "security.protocol" not in KqConf(brokers="b:1", topic="t").security()


def test_redis_conf_password_file_url_secret_and_repr(tmp_path: Path) -> None:
    f = tmp_path / "redis.pw"
    f.write_text("redis-secret-55")
    conf = RedisConf(username="app", password_file=str(f), ca_file="ca.pem")
    assert conf.password == "redis-secret-55"
    assert conf.uses_tls
    assert "redis-secret-55" not in repr(conf)
    url_conf = RedisConf(url="redis://app:in-url-66@h:1/0")
    assert mask(f"failed on {url_conf.url}") == "failed on redis://app:***@h:1/0"
    assert mask("in-url-66") == "***"
    with pytest.raises(ValidationError, match="not both"):
        RedisConf(password="a", password_file=str(f))


def test_config_error_for_password_file_names_file_not_secret(tmp_path: Path) -> None:
    text = f"""
handler: x:y
kq:
  brokers: b:1
  topic: t
  username: u
  password_file: {tmp_path / "nope"}
"""
    with pytest.raises(ConfigError, match="cannot read password_file") as e:
        loads(text, "cfg.yaml")
    assert "cfg.yaml:3" in str(e.value)
