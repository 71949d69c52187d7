"""``BeanstalkBroker.job``: one job's state from the guard's keys and its copies on the nodes.

One EVAL reads every guard key of the job (one hash tag, brokerq_beanstalk.guard) at one
instant; then each recorded copy (``<endpoint>/<job id>`` in the ``copies`` record) is
looked up on its node (``stats-job``: ready, delayed, reserved, buried, or gone). The state:

- ``revoked``: the done mark says so; ``done`` / ``dead``: the ``fin`` record, kept
  ``keep_done`` seconds after the job ended (0: not kept, the job is then unknown);
- ``running``: a worker holds its claim; ``retrying``: a retry is recorded (attempt, due,
  last error);
- ``delayed`` / ``pending``: its reservation or copies record is there, due later / now.

Unknown ids (never seen, forgotten) give None. Redis down: ConnectionFailed; a node down
is reported in ``details`` (its copy says ``unreachable``). ``details``: ``copies``
(``<endpoint>/<beanstalkd job id>`` → state) and ``guard`` (``done``: the done mark,
``claimed``, ``claims`` taken, ``id_reserved``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import greenstalk

from brokerq.errors import ConnectionFailed
from brokerq.records import JobInfo
from brokerq_beanstalk.admin import node_client
from brokerq_beanstalk.config import DqConf
from brokerq_beanstalk.guard import Guard, parse_retry
from brokerq_beanstalk.lua import _SNAPSHOT
from brokerq_beanstalk.unique import parse_reservation

_KINDS = ("unique", "done", "claim", "claims", "retry", "copies", "dead", "fin")


def lookup(conf: DqConf, guard: Guard, job_id: str) -> JobInfo | None:
    """What the guard and the nodes know of ``job_id`` (see the module docstring)."""
    raw = guard.eval("job", _SNAPSHOT, [guard.key(job_id, k) for k in _KINDS], [])
    got = {
        k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
        for k, v in zip(_KINDS, raw, strict=True)
    }
    unique = parse_reservation(got["unique"]) if got["unique"] else None
    due: float | None = unique.due if unique else None
    copies: list[str] = []
    if got["copies"]:
        head, _, listed = got["copies"].partition(" ")
        due = due if due is not None else float(head)
        copies = [c for c in listed.split(",") if c]
    attempt = max(1, int(got["claims"] or 0))
    last_error: str | None = None
    if got["retry"]:
        n, retry_due, error = parse_retry(got["retry"].encode())
        attempt = max(attempt, n)
        last_error = error or None
    finished: float | None = None
    created_at = unique.created if unique else None
    dead: dict[str, Any] = {}
    if got["dead"]:
        try:
            dead = json.loads(got["dead"])
        except ValueError:
            dead = {}
        last_error = str(dead.get("error", last_error))
        attempt = max(attempt, int(dead.get("attempt", attempt)))
    mark = got["done"]
    if mark == "revoked":
        state = "revoked"
    elif mark:
        if not got["fin"]:
            return None  # ended more than keep_done ago: forgotten
        state, at, created = [*got["fin"].split(" "), "", ""][:3]
        finished = float(at) if at else None
        created_at = created_at or (float(created) if created else None)
    elif got["claim"]:
        state = "running"
    elif got["retry"]:
        state = "retrying"
        due = retry_due
    elif unique is not None or copies:
        state = "delayed" if due is not None and due > time.time() else "pending"
    else:
        return None
    details: dict[str, Any] = {
        "copies": _copies(conf, copies),
        "guard": {
            "done": mark or None,
            "claimed": bool(got["claim"]),
            "claims": int(got["claims"] or 0),
            "id_reserved": unique is not None,
        },
    }
    return JobInfo(
        id=job_id,
        state=state,
        attempt=attempt,
        last_error=last_error,
        due=due,
        created_at=created_at,
        finished_at=finished,
        details=details,
    )


def _copies(conf: DqConf, copies: list[str]) -> dict[str, str]:
    """``<endpoint>/<job id>`` → the copy's beanstalkd state (ready, delayed, reserved,
    buried), ``gone``, ``unreachable`` or ``not configured``."""
    nodes = {b.endpoint: b for b in conf.beanstalks}
    out: dict[str, str] = {}
    for copy in copies:
        endpoint, _, jid = copy.rpartition("/")
        node = nodes.get(endpoint)
        if node is None or not jid.isdigit():
            out[copy] = "not configured"
            continue
        try:
            with node_client(node) as c:
                out[copy] = str(c.stats_job(int(jid)).get("state", "?"))
        except greenstalk.NotFoundError:
            out[copy] = "gone"
        except ConnectionFailed:
            out[copy] = "unreachable"
    return out
