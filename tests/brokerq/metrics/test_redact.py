"""redact(): credentials never reach /metrics or the probes."""

from __future__ import annotations

import pytest

from brokerq.metrics.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://app:s3cret@10.0.0.1:6379/0", "redis://app:***@10.0.0.1:6379/0"),
        ("rediss://:s3cret@h:6380", "rediss://:***@h:6380"),
        ("amqp://tokenonly@h/vhost", "amqp://***@h/vhost"),
        ("connect to sasl.password=s3cret failed", "connect to sasl.password=*** failed"),
        ("url?user=a&password=s3cret&x=1", "url?user=a&password=***&x=1"),
        ("api_key: s3cret", "api_key: ***"),
        ("127.0.0.1:11300 refused", "127.0.0.1:11300 refused"),
        ("mail@example.com bounced", "mail@example.com bounced"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    if "s3cret" in text:
        assert "s3cret" not in redact(text)
