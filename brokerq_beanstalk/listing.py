"""``BeanstalkBroker.jobs``: what beanstalkd lets one see of a tube's jobs by state.

beanstalkd has no listing command: ``peek-ready`` / ``peek-delayed`` show only the next job of
each node's tube (the one a reserve would get, or the one due first), and reserved jobs
cannot be peeked at all. So ``pending`` and ``delayed`` are the heads of each node, one job
per node at most, deduplicated by message id (a job's replicas are one job; ``copies`` in its
details says which node holds which copy); ``dead`` comes from the dead-letter index
(brokerq_beanstalk.deadletters, with errors); ``running`` is NotSupported.
"""

from __future__ import annotations

import logging
from typing import Any

import greenstalk

from brokerq.errors import ConnectionFailed, DecodeError, NotSupported
from brokerq.listing import check_listing
from brokerq.message import Message
from brokerq.records import JobInfo, dead_job
from brokerq_beanstalk import codec
from brokerq_beanstalk.admin import node_client
from brokerq_beanstalk.config import DqConf
from brokerq_beanstalk.deadletters import DeadLetters

logger = logging.getLogger(__name__)

_PEEK = {"pending": "peek_ready", "delayed": "peek_delayed"}


def heads(conf: DqConf, state: str) -> list[JobInfo]:
    """The next ``state`` job (pending or delayed) of every node that answers, each job once."""
    found: dict[str, tuple[Message, dict[str, str]]] = {}
    for node in conf.beanstalks:
        try:
            with node_client(node) as c:
                job = getattr(c, _PEEK[state])()
                info = c.stats_job(job)
        except greenstalk.NotFoundError:  # nothing in that state on this node (or just taken)
            continue
        except ConnectionFailed as e:
            logger.warning("jobs: %s", e)
            continue
        try:
            message = codec.decode(job.body)
        except DecodeError:
            message = Message(value=job.body, id=f"{node.endpoint}/{job.id}")
        copy = f"job {job.id}, pri {info.get('pri')}, age {info.get('age')}s"
        if state == "delayed":
            copy += f", ready in {info.get('time-left')}s"
        _, copies = found.setdefault(message.id, (message, {}))
        copies[node.endpoint] = copy
    out = []
    for message, copies in found.values():
        shown = "retrying" if state == "delayed" and message.attempt > 1 else state
        details: dict[str, Any] = {"copies": copies}
        out.append(
            JobInfo(
                id=message.id,
                state=shown,
                attempt=message.attempt,
                due=message.not_before,
                created_at=message.created_at,
                message=message,
                details=details,
            )
        )
    return sorted(out, key=lambda j: (j.due or j.created_at or 0.0, j.id))


def jobs(conf: DqConf, dead: DeadLetters, state: str, limit: int, offset: int) -> list[JobInfo]:
    """``Broker.jobs`` for dq (see the module doc for what beanstalkd can show)."""
    limit, offset = check_listing(state, limit, offset)
    if state == "running":
        raise NotSupported("beanstalkd cannot show reserved jobs (there is no peek-reserved)")
    if state == "dead":
        return [dead_job(d, {"ref": d.ref}) for d in dead.letters(offset + limit)[offset:]]
    return heads(conf, state)[offset : offset + limit]
