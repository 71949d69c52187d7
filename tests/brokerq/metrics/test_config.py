"""The metrics: section: loopback unless another address is written out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from brokerq.config import loads
from brokerq.errors import ConfigError
from brokerq.metrics.config import MetricsConf, is_loopback, parse_listen

BASE = "name: w\nhandler: tests.brokerq.metrics.helpers:ok_or_fail\nembedded: {backend: memory}\n"


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("9464", ("127.0.0.1", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        (9464, ("127.0.0.1", 9464)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("[::]:1", ("::", 1)),
    ],
)
def test_parse_listen(listen: str | int, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["", "::1:9464", "host:port", "127.0.0.1:70000"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError, match="listen"):
        parse_listen(listen)


def test_default_and_implicit_hosts_are_loopback() -> None:
    assert MetricsConf().host == "127.0.0.1"
    assert MetricsConf().port == 9464
    for implicit in ("9999", ":9999", 9999):
        conf = MetricsConf(listen=implicit)
        assert is_loopback(conf.host), implicit


def test_every_interface_only_when_written() -> None:
    assert MetricsConf(listen="0.0.0.0:9464").host == "0.0.0.0"
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.1.2.3")
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")


def test_tls_needs_both_files() -> None:
    with pytest.raises(ValidationError, match="certfile and keyfile go together"):
        MetricsConf(certfile="/x.crt")
    assert MetricsConf(certfile="/x.crt", keyfile="/x.key").tls


def test_worker_yaml_section() -> None:
    cfg = loads(BASE + "metrics: {listen: ':9555', cache: 500ms, stuck_after: 1m}\n")
    assert cfg.metrics is not None
    assert (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9555)
    assert cfg.metrics.cache == 0.5 and cfg.metrics.stuck_after == 60.0
    assert MetricsConf().stuck_after is None  # derived from the worker's time limit
    assert loads(BASE + "metrics: {}\n").metrics == MetricsConf()
    assert loads(BASE).metrics is None


def test_worker_yaml_errors_name_key_and_line() -> None:
    with pytest.raises(
        ConfigError, match=r"<config>:4: metrics.listen: .*port 'x' is not a number"
    ):
        loads(BASE + "metrics: {listen: '1.2.3.4:x'}\n")
    with pytest.raises(ConfigError, match=r"<config>:5: metrics.bind: unknown key"):
        loads(BASE + "metrics:\n  bind: 0.0.0.0\n")


def test_each_supervised_process_gets_its_own_port() -> None:
    from brokerq.embedded.memory import MemoryBroker
    from brokerq.metrics.exporter import Exporter
    from brokerq.metrics.setup import NoExporter, exporter_for

    cfg = loads(BASE + "metrics: {listen: '127.0.0.1:9600'}\n")
    first, third = exporter_for(cfg, MemoryBroker(), 0), exporter_for(cfg, MemoryBroker(), 2)
    assert isinstance(first, Exporter) and isinstance(third, Exporter)
    assert (first.conf.host, first.conf.port) == ("127.0.0.1", 9600)
    assert (third.conf.host, third.conf.port) == ("127.0.0.1", 9602)
    assert isinstance(exporter_for(loads(BASE), MemoryBroker()), NoExporter)


def test_the_supervisors_worker_index_picks_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from brokerq.embedded.memory import MemoryBroker
    from brokerq.metrics.exporter import Exporter
    from brokerq.metrics.setup import exporter_for
    from brokerq.supervisor import INDEX_ENV

    cfg = loads(BASE + "metrics: {listen: '127.0.0.1:9600'}\n")
    monkeypatch.setenv(INDEX_ENV, "3")
    exporter = exporter_for(cfg, MemoryBroker())
    assert isinstance(exporter, Exporter) and exporter.conf.port == 9603
    monkeypatch.setenv(INDEX_ENV, "x")
    with pytest.raises(ConfigError, match="BROKERQ_WORKER_INDEX='x'"):
        exporter_for(cfg, MemoryBroker())
