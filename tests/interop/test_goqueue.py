"""Interop with zeromicro/go-queue dq, both ways, on the real services.

The Go side (tests/interop/goq, requiring go-queue as a module) is built once with
``go build`` into a cache outside the repo (keyed by the hash of its sources).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from brokerq.message import Message
from brokerq.testing.servers import redis_address
from brokerq_beanstalk import Consumer, DqConf, Producer
from tests.brokerq_beanstalk.helpers import consuming
from tests.contract import Recorder, wait_for
from tests.services import services_required

pytestmark = pytest.mark.integration

GOQ_DIR = Path(__file__).with_name("goq")


@pytest.fixture(scope="session")
def goq() -> Path:
    """Path of the built Go binary (skips when no Go toolchain)."""
    go = shutil.which("go")
    if go is None:
        if services_required():  # CI: a missing tool is a failure, never a skip
            pytest.fail("no Go toolchain on PATH", pytrace=False)
        pytest.skip("no Go toolchain on PATH")
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((GOQ_DIR / name).read_bytes())
    out = Path(tempfile.gettempdir()) / "brokerq-interop" / f"goq-{digest.hexdigest()[:16]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        tmp = f"{out}.{os.getpid()}.tmp"  # pytest-xdist workers may build at the same time
        build = subprocess.run(
            [go, "build", "-o", tmp, "."],
            cwd=GOQ_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if build.returncode != 0:
            pytest.fail(f"go build failed:\n{build.stderr}")
        os.replace(tmp, out)
    return out


def conf_for(endpoints: list[str], tube: str, redis_url: str, prefix: str, **kw: object) -> DqConf:
    return DqConf.model_validate(
        {
            "beanstalks": [{"endpoint": e, "tube": tube} for e in endpoints],
            "redis": {"url": redis_url, "prefix": prefix},
            "claim_ttl": "3s",
            **kw,
        }
    )


def test_go_producer_to_our_consumer(
    goq: Path,
    beanstalkd_endpoints: list[str],
    beanstalk_tube: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    conf = conf_for(beanstalkd_endpoints, beanstalk_tube, redis_url, redis_prefix)
    prefix = f"go-{beanstalk_tube}"
    started = time.time()
    produced = subprocess.run(
        [
            str(goq),
            "produce",
            "-endpoints",
            ",".join(beanstalkd_endpoints),
            "-tube",
            beanstalk_tube,
            "-n",
            "20",
            "-delay",
            "1500ms",
            "-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = produced.stdout.split()
    assert len(ids) == 20 and all(i.count(",") == 2 for i in ids)  # 3 copies each
    rec = Recorder()
    with consuming(conf, rec):
        assert wait_for(lambda: len(rec.seen) >= 20, timeout=30)
        time.sleep(1.0)
    assert sorted(rec.values()) == sorted(f"{prefix}-{i}".encode() for i in range(20))
    for msg, at in zip(rec.seen, rec.times, strict=True):
        assert msg.not_before is not None and at >= msg.not_before  # go-queue's nanos honoured
        assert msg.not_before >= started + 1.5 - 0.01


def test_our_goqueue_compat_producer_to_go_consumer(
    goq: Path,
    beanstalkd_endpoints: list[str],
    beanstalk_tube: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    conf = conf_for(
        beanstalkd_endpoints, beanstalk_tube, redis_url, redis_prefix, goqueue_compat=True
    )
    bodies = [f"py-{beanstalk_tube}-{i}" for i in range(20)]
    consumer = subprocess.Popen(
        [
            str(goq),
            "consume",
            "-endpoints",
            ",".join(beanstalkd_endpoints),
            "-tube",
            beanstalk_tube,
            "-redis",
            "{}:{}".format(*redis_address(redis_url)),
            "-n",
            "20",
            "-timeout",
            "40s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Producer.from_conf(conf) as producer:
            for i, body in enumerate(bodies):
                producer.delay(body, 0.5 + (i % 3) * 0.5)
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0, err
    assert sorted(out.split()) == sorted(bodies)  # each once: go-queue's md5 lock dedups replicas


def test_compat_body_is_read_by_our_consumer_too(
    beanstalkd_endpoints: list[str], beanstalk_tube: str, redis_url: str, redis_prefix: str
) -> None:
    conf = conf_for(
        beanstalkd_endpoints, beanstalk_tube, redis_url, redis_prefix, goqueue_compat=True
    )
    with Producer.from_conf(conf) as producer:
        job = producer.delay(b"mixed fleet", 0.3)
    got: list[Message] = []
    consumer = Consumer(conf)
    with consuming(conf, got.append):
        assert wait_for(lambda: len(got) >= 1, timeout=15)
        time.sleep(0.5)
    consumer.close()
    assert [m.id for m in got] == [job] and got[0].value == b"mixed fleet"
