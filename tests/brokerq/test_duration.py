from __future__ import annotations

from datetime import timedelta

import pytest

from brokerq.duration import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("1m", 60.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        ("10", 10.0),
        (3, 3.0),
        (0.25, 0.25),
        (timedelta(minutes=2), 120.0),
    ],
)
def test_parses(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5 parsecs", "ms", "5s3", "-1s", -2, True, None, [1]])
def test_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
