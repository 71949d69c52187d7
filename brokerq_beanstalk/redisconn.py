"""Redis clients for the dq guard: a URL, a Sentinel master or a Cluster, with TLS and ACLs.

Short socket timeouts (2 s) so a Redis outage surfaces as ConnectionFailed quickly.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from brokerq.secrets import mask_url
from brokerq_beanstalk.config import RedisConf, split_endpoint


def connect(conf: RedisConf) -> Any:
    """A redis-py client for a URL, a Sentinel master or a Cluster (short socket timeouts).

    TLS verifies the server certificate (``ssl_cert_reqs=required``) and, unless
    ``ssl_check_hostname`` is off, its host name. Sentinels themselves are reached without
    TLS or password; the master they name gets both.
    """
    opts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if conf.username is not None:
        opts["username"] = conf.username
    if conf.password is not None:
        opts["password"] = conf.password
    url = conf.url
    if conf.uses_tls:
        opts.update(
            ssl_cert_reqs="required",
            ssl_check_hostname=conf.ssl_check_hostname,
            ssl_ca_certs=conf.ca_file,
            ssl_certfile=conf.cert_file,
            ssl_keyfile=conf.key_file,
        )
        if url.startswith("redis://"):
            url = "rediss://" + url.removeprefix("redis://")
    if conf.sentinel is not None:
        nodes = [split_endpoint(n) for n in conf.sentinel.nodes]
        timeouts = {k: opts[k] for k in ("socket_timeout", "socket_connect_timeout")}
        sentinel = Sentinel(nodes, sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
        if conf.uses_tls:
            opts["ssl"] = True
        return sentinel.master_for(conf.sentinel.master, **opts)  # type: ignore[no-untyped-call]
    if conf.cluster:
        return RedisCluster.from_url(url, **opts)
    return redis.Redis.from_url(url, **opts)


def describe(conf: RedisConf) -> str:
    """Where the guard lives, for messages: the URL without its password, or the sentinels."""
    if conf.sentinel is not None:
        return f"sentinel master {conf.sentinel.master!r} via {','.join(conf.sentinel.nodes)}"
    return ("cluster " if conf.cluster else "") + mask_url(conf.url)
