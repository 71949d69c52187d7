"""Pure helpers: previews are capped, secrets masked, ages readable, charts made of numbers."""

from __future__ import annotations

from brokerq.web import charts, present


def test_preview_is_capped_to_the_byte_budget() -> None:
    p = present.preview(b"x" * 10_000, 100)
    assert p.text == "x" * 100 and p.size == 10_000 and p.cut == 9_900 and not p.binary
    cut_in_a_character = present.preview("é" * 10, 3)  # 2 bytes each: the 3rd byte is half
    assert cut_in_a_character.text.startswith("é") and cut_in_a_character.size == 20
    assert present.preview(b"\xff\x00abc", 100).binary
    assert present.preview(None, 10).size == 0


def test_secret_headers_and_url_passwords_are_masked() -> None:
    masked = dict(
        present.mask_headers(
            {
                "Authorization": "Bearer abc",
                "X-Api-Key": "k",
                "db_password": "p",
                "session-token": "t",
                "Cookie": "c",
                "redis": "redis://user:pa55@host:6379/0",
                "plain": "visible",
            }
        )
    )
    assert masked["plain"] == "visible"
    for name in ("Authorization", "X-Api-Key", "db_password", "session-token", "Cookie"):
        assert masked[name] == present.MASK
    assert "pa55" not in masked["redis"] and masked["redis"].startswith("redis://user:")
    assert masked["redis"].endswith("@host:6379/0")


def test_ages() -> None:
    assert present.age(None) == "—"
    assert present.age(5) == "5s"
    assert present.age(185) == "3m05s"
    assert present.age(7800) == "2h10m"
    assert present.age(3 * 86400 + 3 * 3600) == "3d03h"
    assert present.since(100.0, now=160.0) == "1m00s"
    assert present.utc(0) == "—" and present.utc(86400.0) == "1970-01-02 00:00:00 UTC"


def test_rates_from_cumulative_counts() -> None:
    rates = charts.rate_series([(0.0, 0), (10.0, 50), (20.0, 10), (30.0, 40), (30.0, 99)])
    assert rates == [(10.0, 5.0), (20.0, 0.0), (30.0, 3.0)]  # a reset counts as 0, not -4/s


def test_sparkline_is_numbers_and_an_escaped_title() -> None:
    svg = charts.sparkline(
        [(90.0, 1.0), (95.0, 3.0), (100.0, 2.0)], span=60, now=100.0, label="<b>x</b>"
    )
    assert "<polyline" in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "<b>" not in svg
    assert "style=" not in svg
    empty = charts.sparkline([], span=60, now=100.0, label="none")
    assert "<polyline" not in empty


def test_detail_formats_times_flags_and_secrets() -> None:
    assert present.detail("lease_until", 1_800_000_000.0).endswith(" UTC")
    assert present.detail("claims", 1_800_000_000) == "1800000000"  # not a time-like key
    assert present.detail("reserved_id", True) == "yes" and present.detail("done", None) == "—"
    assert present.detail("api_token", "hunter2") == present.MASK
