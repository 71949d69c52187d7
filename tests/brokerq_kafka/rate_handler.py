"""Handler for the kq rate-limit test: appends ``<unix time> <pid>`` to ``$KQ_RATE_OUT.<pid>``
for each message it starts (one file per process, line-buffered)."""

from __future__ import annotations

import os
import time
from typing import TextIO

_out: list[TextIO] = []


def record(value: bytes) -> None:
    if not _out:
        _out.append(open(f"{os.environ['KQ_RATE_OUT']}.{os.getpid()}", "a", buffering=1))  # noqa: SIM115
    _out[0].write(f"{time.time():.6f} {os.getpid()}\n")
