"""One side of the idempotent-enqueue race: delay the same job id N times on a sqlite file.

    python race_enqueue.py DB JOB_ID N START_FILE

Waits until START_FILE exists (so both sides start together), then prints
``<created> <duplicates>`` (how many calls returned an id, how many raised DuplicateJob).
"""

from __future__ import annotations

import os
import sys
import time

from brokerq.embedded import SqliteBroker
from brokerq.errors import DuplicateJob


def main() -> None:
    db, job_id, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    created = duplicates = 0
    with SqliteBroker({"path": db, "queue": "q"}) as broker, broker.delay_producer() as producer:
        producer.revoke("no-such-job")  # opens the connection before the race starts
        deadline = time.monotonic() + 60
        while not os.path.exists(start) and time.monotonic() < deadline:
            time.sleep(0.001)
        for _ in range(n):
            try:
                producer.delay(b"order-42", 0.5, job_id=job_id, unique_for=2.0)
                created += 1
            except DuplicateJob:
                duplicates += 1
    print(created, duplicates)


if __name__ == "__main__":
    main()
