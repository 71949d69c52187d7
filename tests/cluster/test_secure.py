"""The secure listener set: kq over SASL_SSL with SCRAM-SHA-512 and dq's guard over Redis TLS with
an ACL user, certificates and host names verified.

The contract suites pass over them; ``brokerq check`` fails in one line naming the endpoint and
the reason for a wrong CA, a wrong host name and a wrong password; and no password appears in
any log written meanwhile (the brokerq loggers at DEBUG, the CLI's output, the servers' logs).
The last test of the module does that grep, so run the module as a whole.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk import BeanstalkBroker, DqConf
from brokerq_kafka import KafkaBroker, KqConf
from tests.cluster.conftest import (
    KAFKA_BADHOST,
    KAFKA_SECURE,
    REDIS_BADHOST_URL,
    REDIS_TLS_URL,
    SECURE_USER,
    services_dir,
)
from tests.contract import DelayContract, ProducerContract
from tests.services import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
SERVER_LOGS = ["kafka-c1", "kafka-c2", "kafka-c3", "redis-tls", "redis-badhost"]
OUTPUTS: list[str] = []  # everything the CLI printed during this module
OFFSETS: dict[str, int] = {}  # where each server log ended when the module started


@pytest.fixture(scope="module", autouse=True)
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every record of the brokerq loggers at DEBUG goes to a file, unmasked (no filter)."""
    path = tmp_path_factory.mktemp("secure-logs") / "brokerq.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    names = ["brokerq", "brokerq_kafka", "brokerq_beanstalk", "redis"]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).addHandler(handler)
        logging.getLogger(n).setLevel(logging.DEBUG)
    # where each server log ends now: only what is written from here on is searched
    for name in SERVER_LOGS:
        log = services_dir() / name / f"{name}.log"
        OFFSETS[name] = log.stat().st_size if log.exists() else 0
    yield path
    for n in names:
        logging.getLogger(n).removeHandler(handler)
        logging.getLogger(n).setLevel(levels[n])
    handler.close()


def kq_conf(secure_dir: Path, topic: str, **over: Any) -> KqConf:
    values: dict[str, Any] = {
        "brokers": KAFKA_SECURE,
        "topic": topic,
        "group": f"g-{topic}",
        "offset": "first",
        "processors": 4,
        "username": SECURE_USER,
        "password_file": str(secure_dir / "kafka.password"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "ca_file": str(secure_dir / "ca.pem"),
        "client_config": dict(FAST_GROUP),
    }
    values.update(over)
    return KqConf(**values)


def redis_section(secure_dir: Path, prefix: str, **over: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "url": REDIS_TLS_URL,
        "username": SECURE_USER,
        "password_file": str(secure_dir / "redis.password"),
        "ca_file": str(secure_dir / "ca.pem"),
        "prefix": prefix,
    }
    section.update(over)
    return section


@pytest.fixture
def tls_prefix(secure_dir: Path, unique_name: str) -> Iterator[str]:
    """A key prefix on the TLS Redis; its keys are deleted afterwards."""
    prefix = f"{unique_name}:"
    yield prefix
    import redis

    client = redis.Redis.from_url(
        REDIS_TLS_URL,
        username=SECURE_USER,
        password=(secure_dir / "redis.password").read_text().strip(),
        ssl_ca_certs=str(secure_dir / "ca.pem"),
    )
    try:
        keys = list(client.scan_iter(match=f"{unique_name}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class TestKafkaSaslSslContract(ProducerContract):
    @pytest.fixture
    def broker(self, secure_dir: Path, cluster_topic: str) -> Iterator[KafkaBroker]:
        b = KafkaBroker(kq_conf(secure_dir, cluster_topic))
        yield b
        b.close()


class TestRedisTlsAclContract(ProducerContract, DelayContract):
    @pytest.fixture
    def broker(
        self,
        secure_dir: Path,
        beanstalkd_endpoints: list[str],
        beanstalk_tube: str,
        tls_prefix: str,
    ) -> Iterator[BeanstalkBroker]:
        conf = DqConf.model_validate(
            {
                "beanstalks": [
                    {"endpoint": e, "tube": beanstalk_tube} for e in beanstalkd_endpoints
                ],
                "redis": redis_section(secure_dir, tls_prefix),
                "claim_ttl": "3s",
                "concurrency": 4,
            }
        )
        b = BeanstalkBroker(conf)
        yield b
        b.close()


# --------------------------------------------------------------------------- brokerq check


def check(tmp_path: Path, section: str, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run ``brokerq check`` on a config with this broker section; keep what it printed."""
    import yaml

    cfg = tmp_path / "check.yaml"
    cfg.write_text(yaml.safe_dump({"handler": "tests.brokerq.cli_handlers:record", section: body}))
    proc = subprocess.run(
        [sys.executable, "-m", "brokerq", "check", str(cfg)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    OUTPUTS.append(proc.stdout + proc.stderr)
    return proc


def kq_section(secure_dir: Path, **over: Any) -> dict[str, Any]:
    section = kq_conf(secure_dir, "check-topic").model_dump(
        include={"brokers", "topic", "username", "sasl_mechanism", "ca_file", "password_file"}
    )
    section.update(over)
    return section


def dq_section(secure_dir: Path, **over: Any) -> dict[str, Any]:
    return {
        "beanstalks": [{"endpoint": "127.0.0.1:11300", "tube": "check"}],
        "redis": redis_section(secure_dir, "check:", **over),
    }


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 4, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_check_ok_over_sasl_ssl_and_mutual_tls(secure_dir: Path, tmp_path: Path) -> None:
    proc = check(tmp_path, "kq", kq_section(secure_dir))
    assert proc.returncode == 0, proc.stderr
    client = {
        "cert_file": str(secure_dir / "client.pem"),
        "key_file": str(secure_dir / "client.key"),
    }
    proc = check(tmp_path, "kq", kq_section(secure_dir, **client))
    assert proc.returncode == 0, proc.stderr
    proc = check(tmp_path, "dq", dq_section(secure_dir, **client))
    assert proc.returncode == 0, proc.stderr


def test_check_kafka_wrong_ca(secure_dir: Path, tmp_path: Path) -> None:
    proc = check(tmp_path, "kq", kq_section(secure_dir, ca_file=str(secure_dir / "wrong-ca.pem")))
    assert_one_line_failure(proc, "127.0.0.1:19392", "TLS certificate rejected", "certificate")


def test_check_kafka_wrong_host_name(secure_dir: Path, tmp_path: Path) -> None:
    proc = check(tmp_path, "kq", kq_section(secure_dir, brokers=KAFKA_BADHOST))
    assert_one_line_failure(proc, "127.0.0.1:19492", "mismatch")


def test_check_kafka_wrong_password(secure_dir: Path, tmp_path: Path) -> None:
    body = kq_section(secure_dir, password="not-the-password")
    del body["password_file"]
    proc = check(tmp_path, "kq", body)
    assert_one_line_failure(proc, "127.0.0.1:19392", "invalid credentials")
    assert "not-the-password" not in proc.stderr


def test_check_redis_wrong_ca(secure_dir: Path, tmp_path: Path) -> None:
    proc = check(tmp_path, "dq", dq_section(secure_dir, ca_file=str(secure_dir / "wrong-ca.pem")))
    assert_one_line_failure(proc, "127.0.0.1:16390", "certificate verify failed")


def test_check_redis_wrong_host_name(secure_dir: Path, tmp_path: Path) -> None:
    proc = check(tmp_path, "dq", dq_section(secure_dir, url=REDIS_BADHOST_URL))
    assert_one_line_failure(proc, "127.0.0.1:16391", "mismatch")


def test_check_redis_wrong_password(secure_dir: Path, tmp_path: Path) -> None:
    body = dq_section(secure_dir, password="not-the-password")
    del body["redis"]["password_file"]
    proc = check(tmp_path, "dq", body)
    assert_one_line_failure(proc, "127.0.0.1:16390", "invalid username-password")
    assert "not-the-password" not in proc.stderr


def test_check_password_in_url_is_masked(secure_dir: Path, tmp_path: Path) -> None:
    url = REDIS_TLS_URL.replace("rediss://", "rediss://brokerq:url-secret-123@")
    body = dq_section(secure_dir, url=url, password=None, password_file=None)
    proc = check(tmp_path, "dq", body)
    assert_one_line_failure(proc, "127.0.0.1:16390", "***")
    assert "url-secret-123" not in proc.stderr


@pytest.mark.parametrize(
    "config",
    [
        "kq-sasl-ssl.yaml",
        "dq-redis-tls.yaml",
        "kq-cluster.yaml",
        "dq-redis-cluster.yaml",
        "dq-redis-sentinel.yaml",
    ],
)
def test_example_configs_pass_check(secure_dir: Path, config: str) -> None:
    env = {**os.environ, "BROKERQ_SECURE_DIR": str(secure_dir)}
    for var in ("KAFKA_BROKERS", "REDIS_URL", "REDIS_CLUSTER_URL"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "brokerq", "check", f"configs/{config}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    OUTPUTS.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")


# --------------------------------------------------------------------------- last: the grep


def test_no_password_in_any_log(secure_dir: Path, log_file: Path) -> None:
    # failures in this process too (librdkafka logs them through brokerq_kafka.librdkafka)
    bad = KafkaBroker(
        kq_conf(secure_dir, "grep-topic", password="not-the-password", password_file=None)
    )
    with pytest.raises(ConnectionFailed):
        bad.check()
    bad.close()
    passwords = [(secure_dir / f"{n}.password").read_text().strip() for n in ("kafka", "redis")]
    passwords += ["not-the-password", "url-secret-123"]
    texts = {"brokerq loggers": log_file.read_text(), "CLI output": "\n".join(OUTPUTS)}
    for name in SERVER_LOGS:
        log = services_dir() / name / f"{name}.log"
        if log.exists():
            with log.open("rb") as f:
                f.seek(OFFSETS.get(name, 0))
                texts[f"{name}.log"] = f.read().decode(errors="replace")
    assert texts["brokerq loggers"], "nothing was logged: the grep would prove nothing"
    leaks = [(where, pw[:3]) for where, text in texts.items() for pw in passwords if pw in text]
    assert leaks == [], f"passwords found in logs: {leaks}"
