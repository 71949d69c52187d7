"""Admin reads of the nodes (short-lived greenstalk connections): node states and stats.

Errors are translated here: socket and protocol trouble → ConnectionFailed naming the node.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import greenstalk

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.codec import decode
from brokerq_beanstalk.config import Beanstalk, DqConf, split_endpoint

logger = logging.getLogger(__name__)

_STATES = {
    "pending": "current-jobs-ready",
    "delayed": "current-jobs-delayed",
    "in_flight": "current-jobs-reserved",
    "dead": "current-jobs-buried",
}


@contextmanager
def node_client(node: Beanstalk) -> Iterator[greenstalk.Client[bytes]]:
    """A greenstalk client using and watching the node's tube; ConnectionFailed if down."""
    try:
        sock = socket.create_connection(split_endpoint(node.endpoint), timeout=3.0)
        client: greenstalk.Client[bytes] = greenstalk.Client(
            sock, encoding=None, use=node.tube, watch=node.tube
        )
    except (OSError, greenstalk.Error) as e:
        raise ConnectionFailed(f"beanstalkd {node.endpoint}: {e}") from e
    try:
        yield client
    except (OSError, greenstalk.UnknownResponseError) as e:
        raise ConnectionFailed(f"beanstalkd {node.endpoint}: {e}") from e
    finally:
        client.close()


def node_states(conf: DqConf) -> dict[str, str]:
    """Each node's endpoint → ``up``, or why it cannot be reached."""
    out: dict[str, str] = {}
    for node in conf.beanstalks:
        try:
            with node_client(node) as c:
                c.stats()
            out[node.endpoint] = "up"
        except ConnectionFailed as e:
            out[node.endpoint] = str(e).removeprefix(f"beanstalkd {node.endpoint}: ")
    return out


def waited(client: greenstalk.Client[bytes], now: float | None = None) -> int | None:
    """Seconds the job at the head of the node's ready queue has waited since it became
    runnable (its due time, or its put when it had none; ``stats-job`` age); None: none ready.
    beanstalkd hands out the lowest priority first, so with mixed priorities this is the
    head's wait, not always the longest one."""
    now = time.time() if now is None else now
    try:
        job = client.peek_ready()
        age = float(str(client.stats_job(job).get("age", 0)))
    except greenstalk.NotFoundError:  # taken or deleted since: nothing ready now
        return None
    try:
        due = decode(job.body).not_before
    except Exception:  # a body we cannot read: its put time is all we know
        due = None
    since = now - age if due is None else max(now - age, due)
    return int(max(0.0, now - since))


def tube_stats(conf: DqConf) -> dict[str, int]:
    """Jobs per state, each job once, then per-node lines (see ``BeanstalkBroker.stats``)."""
    per_node: dict[str, dict[str, int] | None] = {}
    ages: list[int] = []
    for node in conf.beanstalks:
        try:
            with node_client(node) as c:
                st = c.stats_tube(node.tube)
                age = waited(c) if int(str(st.get("current-jobs-ready", 0))) else None
            if age is not None:
                ages.append(age)
            per_node[node.endpoint] = {k: int(str(st.get(v, 0))) for k, v in _STATES.items()}
        except greenstalk.NotFoundError:  # the tube does not exist (yet) on this node
            per_node[node.endpoint] = dict.fromkeys(_STATES, 0)
        except ConnectionFailed as e:
            logger.warning("stats: %s", e)
            per_node[node.endpoint] = None
    counts = [n for n in per_node.values() if n is not None]
    if not counts:  # zeros here would read as an idle, healthy queue
        raise ConnectionFailed(
            "stats: no beanstalkd node answers: " + ", ".join(b.endpoint for b in conf.beanstalks)
        )
    replicas = min(conf.replicas, len(conf.beanstalks))
    one_each = replicas >= len(conf.beanstalks)
    out: dict[str, int] = {}
    for k in _STATES:
        values = [n[k] for n in counts]
        if k == "dead":
            out[k] = sum(values)
        elif one_each:
            out[k] = max(values, default=0)
        else:
            out[k] = -(-sum(values) // replicas)
    out["oldest_age_seconds"] = max(ages, default=0)  # a job's copies share their put time
    out["nodes:up"] = len(counts)
    for endpoint, n in per_node.items():
        if n is None:
            out[f"node:{endpoint}:unreachable"] = 1
        else:
            out[f"node:{endpoint}:copies"] = sum(n.values())
    return out
