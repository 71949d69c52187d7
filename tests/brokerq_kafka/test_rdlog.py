"""librdkafka's log lines: through the ``brokerq_kafka.librdkafka`` logger, transport chatter
and repeats at DEBUG, so an unreachable Kafka shows the user one line (brokerq_kafka.rdlog)."""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

import pytest

from brokerq_kafka.clientconf import build
from brokerq_kafka.rdlog import LIBRDKAFKA_LOG, REPEAT_WINDOW, LibrdkafkaLog
from tests.brokerq.test_cli import BROKERQ, ROOT

FMT = "%s [%s] %s"
REFUSED = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def levels(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


@pytest.fixture
def sink(caplog: pytest.LogCaptureFixture) -> tuple[LibrdkafkaLog, Clock]:
    caplog.set_level(logging.DEBUG, logger="test.librdkafka")
    clock = Clock()
    return LibrdkafkaLog(logging.getLogger("test.librdkafka"), clock=clock), clock


def test_every_client_logs_through_the_shared_sink() -> None:
    for role in ("durable", "producer", "consumer", "reader"):
        assert build(role, bootstrap="h:1")["logger"] is LIBRDKAFKA_LOG


def test_transport_lines_go_to_debug(
    sink: tuple[LibrdkafkaLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = sink
    log.log(logging.ERROR, FMT, "FAIL", "rdkafka#consumer-1", REFUSED)
    assert levels(caplog) == [(logging.DEBUG, f"FAIL [rdkafka#consumer-1] {REFUSED}")]


def test_other_lines_keep_their_level_once_then_repeats_go_to_debug(
    sink: tuple[LibrdkafkaLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, clock = sink
    text = "Configuration property foo.bar is a producer property and will be ignored"
    log.log(logging.WARNING, FMT, "CONFWARN", "rdkafka#consumer-1", text)
    log.log(logging.WARNING, FMT, "CONFWARN", "rdkafka#consumer-2", text)  # another client
    clock.now += REPEAT_WINDOW - 1
    log.log(logging.WARNING, FMT, "CONFWARN", "rdkafka#consumer-1", text)
    clock.now += 2  # a window after the first saying: said again at its level
    log.log(logging.WARNING, FMT, "CONFWARN", "rdkafka#consumer-1", text)
    log.log(logging.WARNING, FMT, "CONFWARN", "rdkafka#consumer-1", text + " (other)")
    assert [lvl for lvl, _ in levels(caplog)] == [
        logging.WARNING,
        logging.DEBUG,
        logging.DEBUG,
        logging.WARNING,
        logging.WARNING,
    ]


def test_timings_in_a_line_do_not_make_it_new(
    sink: tuple[LibrdkafkaLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = sink
    for ms in (0, 12, 503):
        log.log(
            logging.ERROR,
            FMT,
            "SSL",
            "rdkafka#producer-1",
            f"handshake failed (after {ms}ms in state SSL_HANDSHAKE)",
        )
    assert [lvl for lvl, _ in levels(caplog)] == [logging.ERROR, logging.DEBUG, logging.DEBUG]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_against_a_closed_port_prints_one_line(tmp_path: Path) -> None:
    port = closed_port()
    cfg = tmp_path / "kq.yaml"
    cfg.write_text(
        "name: closed\nhandler: tests.brokerq.cli_handlers:record\n"
        f"kq: {{brokers: ['127.0.0.1:{port}'], topic: t, group: g}}\n"
    )
    proc = subprocess.run(
        [BROKERQ, "run", str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("brokerq: error: kafka"), proc.stderr
    assert f"127.0.0.1:{port}" in lines[0], proc.stderr
    # the lines are still there for whoever asks for DEBUG
    debug = subprocess.run(
        [BROKERQ, "run", str(cfg), "--log-level", "DEBUG"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode == 4, debug.stderr
    assert "brokerq_kafka.librdkafka: FAIL" in debug.stderr, debug.stderr


def test_ctrl_c_lost_inside_a_callback_is_raised_by_serving() -> None:
    """confluent-kafka loses a KeyboardInterrupt raised inside a callback (flush() then fails
    with SystemError); a call made through ``serving`` raises KeyboardInterrupt instead."""
    from brokerq_kafka._errors import serving

    def flush_that_lost_it() -> int:  # confluent-kafka's flush in that case
        raise SystemError("<method 'flush'> returned NULL without setting an exception")

    def broken() -> int:
        raise SystemError("something else")

    with pytest.raises(KeyboardInterrupt):
        serving(flush_that_lost_it)
    with pytest.raises(SystemError):  # any other SystemError stays one
        serving(broken)
    assert serving(lambda: 3) == 3
