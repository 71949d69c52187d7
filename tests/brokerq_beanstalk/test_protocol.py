"""The beanstalkd protocol's limits (issue 11 #2, #3): tube names beanstalkd refuses are config
errors; a refused command never leaves a connection out of step or using the wrong tube;
delays beyond beanstalkd's 32-bit fields are refused before anything is sent."""

from __future__ import annotations

import time

import greenstalk
import pytest
from pydantic import ValidationError

from brokerq.config import loads
from brokerq.errors import ConfigError, ConnectionFailed
from brokerq.testing.servers import split_endpoint
from brokerq_beanstalk import BeanstalkBroker, DqConf, Producer
from brokerq_beanstalk._wire import NodeConn
from brokerq_beanstalk.config import Beanstalk
from brokerq_beanstalk.protocol import Conn, ProtocolError
from tests.brokerq_beanstalk.conftest import MakeConf

pytestmark = pytest.mark.integration

CENTURIES = 200 * 365 * 86400.0


@pytest.mark.parametrize("tube", ["orders:eu", "zakázky", "-lead", "a b", "x" * 201])
def test_tube_names_beanstalkd_refuses_are_config_errors(tube: str) -> None:
    with pytest.raises(ValidationError, match="tube names are 1-200 ASCII"):
        Beanstalk(endpoint="127.0.0.1:11300", tube=tube)
    text = (
        f"handler: m:f\ndq:\n  beanstalks:\n    - endpoint: 127.0.0.1:11300\n      tube: '{tube}'\n"
    )
    with pytest.raises(ConfigError, match=r"<config>:5: dq\.beanstalks\.0\.tube: .*not starting"):
        loads(text)


def test_tube_names_beanstalkd_accepts() -> None:
    for tube in ("orders", "a-b_c.d$e(f)g;h/i+j", "x" * 200):
        assert Beanstalk(endpoint="127.0.0.1:11300", tube=tube).tube == tube


def default_total(endpoint: str) -> int:
    with greenstalk.Client(split_endpoint(endpoint)) as c:
        return int(c.stats_tube("default").get("total-jobs", 0))


def test_a_refused_use_never_leaves_a_usable_connection(beanstalkd_endpoints: list[str]) -> None:
    endpoint = beanstalkd_endpoints[0]
    before = default_total(endpoint)
    conn = NodeConn(endpoint, "orders:eu")  # bypasses the config check on purpose
    for _ in range(2):
        with pytest.raises(ConnectionFailed, match="use orders:eu"):
            conn.send_put(b"x", 2, 0, 5)
            conn.read_put()
        conn.down_until = 0.0  # no backoff: try again at once
    conn.close()
    assert default_total(endpoint) == before  # nothing went into `default`


def test_an_answer_out_of_step_closes_the_connection(
    beanstalkd_endpoints: list[str], beanstalk_tube: str
) -> None:
    endpoint = beanstalkd_endpoints[0]
    conn = Conn(endpoint, split_endpoint(endpoint), 5.0)
    conn.use(beanstalk_tube)
    conn.send(b"put 0 %d 5 1\r\nx\r\n" % 2**32)  # BAD_FORMAT, then the body as a command
    with pytest.raises(ProtocolError, match="BAD_FORMAT"):
        conn.line()
    assert conn.closed


def test_delay_beyond_beanstalkd_limit_is_refused_before_sending(make_conf: MakeConf) -> None:
    conf = make_conf()
    with Producer.from_conf(conf) as producer:
        with pytest.raises(ValueError, match="beyond the 4294967295s this broker can hold"):
            producer.delay(b"far", CENTURIES)
        with pytest.raises(ValueError, match=r"priority must be in 0\.\.4294967295"):
            producer.delay(b"x", 1, priority=2**32)
        job = producer.delay(b"next", 30)  # the connections are in step
        copies = producer.copies(job)
        assert len(copies) == 3
    for copy in copies:  # each recorded copy is this job's, not an earlier put's
        endpoint, _, jid = copy.rpartition("/")
        with greenstalk.Client(split_endpoint(endpoint), encoding=None) as c:
            assert c.peek(int(jid)).body.endswith(b"\nnext")
    assert BeanstalkBroker(conf).stats()["delayed"] == 1


def test_ttr_priority_and_delay_are_keywords_of_schedule(make_conf: MakeConf) -> None:
    conf = make_conf()
    with Producer.from_conf(conf) as producer:
        job = producer.schedule(b"k", time.time() + 60, priority=5, ttr=9)
        copies = producer.copies(job)
    endpoint, _, jid = copies[0].rpartition("/")
    with greenstalk.Client(split_endpoint(endpoint)) as c:
        st = c.stats_job(int(jid))
    assert (int(st["pri"]), int(st["ttr"])) == (5, 9)


def test_config_priority_is_32_bit() -> None:
    with pytest.raises(ValidationError):
        DqConf.model_validate(
            {"beanstalks": [{"endpoint": "127.0.0.1:11300", "tube": "t"}], "priority": 2**32}
        )
