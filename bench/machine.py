"""Facts about the machine, the libraries and the servers, recorded with every run."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.settings import HERE, REPO, Settings
from brokerq.testing.servers import RawBeanstalk


def _run(cmd: list[str], timeout: float = 10) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _proc_field(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for ln in Path(path).read_text().splitlines():
            if ln.startswith(key):
                return ln.split(":", 1)[1].strip()
    return None


def kafka_version() -> str | None:
    """The version in the command line of a running Kafka server, or ``BROKERQ_KAFKA_VERSION``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in cmd or "kafka-server" in cmd:
            m = re.search(r"kafka(?:_[\d.]+)?-(\d+\.\d+\.\d+)", cmd)
            if m:
                return m.group(1)
    return os.environ.get("BROKERQ_KAFKA_VERSION")


def machine(settings: Settings) -> dict[str, Any]:
    """Cores, memory, CPU, Python, Go, client library and server versions, the commit."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform()}
    mem = _proc_field("/proc/meminfo", "MemTotal:")
    if mem:
        info["memory_gib"] = round(int(mem.split()[0]) / 1024 / 1024, 1)
    cpu = _proc_field("/proc/cpuinfo", "model name")
    if cpu:
        info["cpu_model"] = cpu
    info["python"] = platform.python_version()
    info["go"] = _run(["go", "version"]).replace("go version ", "")
    for mod in ("confluent_kafka", "greenstalk", "redis", "huey"):
        with contextlib.suppress(Exception):
            m = importlib.import_module(mod)
            version = getattr(m, "__version__", "") or getattr(m, "version", lambda: "")()
            info[f"{mod}_version"] = version
    with contextlib.suppress(Exception):
        import confluent_kafka

        info["librdkafka_version"] = confluent_kafka.libversion()[0]
    with contextlib.suppress(Exception), RawBeanstalk(settings.beanstalks[0], timeout=5) as b:
        info["beanstalkd"] = (b.stats().get("version") or "").strip('"')
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
        info["redis"] = client.info("server").get("redis_version")
        client.close()
    info["kafka"] = kafka_version()
    with contextlib.suppress(OSError):
        gomod = (HERE / "goqueue" / "go.mod").read_text()
        found = re.search(r"github.com/zeromicro/go-queue (\S+)", gomod)
        info["go_queue"] = found.group(1) if found else None
    commit = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    info["brokerq_commit"] = commit if re.fullmatch(r"[0-9a-f]{40}", commit or "") else None
    info["brokerq_dirty"] = bool(_run(["git", "-C", str(REPO), "status", "--porcelain"]))
    return info
