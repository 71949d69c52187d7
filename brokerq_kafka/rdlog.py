"""librdkafka's own log lines, through the ``brokerq_kafka.librdkafka`` logger, kept quiet.

Every Kafka client brokerq builds gets ``logger=LIBRDKAFKA_LOG`` (brokerq_kafka.clientconf),
so librdkafka never writes to stderr by itself. What librdkafka says about a broker it cannot
reach (facilities in ``TRANSPORT``: refused connections, brokers down) is what brokerq
already reports in its own words -- the ``error_cb`` warnings of a running client, the one
line of ``ConnectionFailed`` at startup -- so those lines go to DEBUG. Any other line keeps
librdkafka's level (configuration warnings, for instance), and a line said again within
``REPEAT_WINDOW`` seconds goes to DEBUG: an unreachable cluster makes each client repeat
itself several times a second, which used to bury ``brokerq run``'s one-line error under
~100 lines.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

LIBRDKAFKA_LOGGER = logging.getLogger("brokerq_kafka.librdkafka")

#: librdkafka log facilities about connections; brokerq reports these failures itself
TRANSPORT = frozenset({"FAIL", "BROKERFAIL", "ERROR", "DISCONNECT", "CONNECT", "DOWN"})
REPEAT_WINDOW = 60.0  # seconds
_MAX_REMEMBERED = 1000
# what changes between two sayings of the same thing: the client's name, timings, counts
_VARYING = re.compile(
    r"rdkafka#\w+-\d+|\(after \d+ms in state \w+[^)]*\)|\(\d+ identical error\(s\) suppressed\)"
)


class LibrdkafkaLog:
    """A logger-like object for confluent-kafka's ``logger`` setting (it calls ``log``).

    Thread-safe: librdkafka calls it from its own threads. ``clock`` is for tests.
    """

    def __init__(self, target: logging.Logger, clock: Any = time.monotonic) -> None:
        self.target = target
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def log(self, level: int, msg: str, *args: Any) -> None:
        """confluent-kafka calls ``log(level, "%s [%s] %s", facility, client, text)``."""
        facility = str(args[0]) if args else ""
        text = str(args[2]) if len(args) > 2 else (msg % args if args else msg)
        if facility in TRANSPORT or self._repeated(facility, text):
            level = logging.DEBUG
        if self.target.isEnabledFor(level):
            self.target.log(level, msg, *args)

    def _repeated(self, facility: str, text: str) -> bool:
        key = (facility, _VARYING.sub("", text))
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < REPEAT_WINDOW:
                return True
            if len(self._last) >= _MAX_REMEMBERED:
                self._last.clear()
            self._last[key] = now
            return False


#: the one instance every client shares (a line repeated by four clients is said once)
LIBRDKAFKA_LOG = LibrdkafkaLog(LIBRDKAFKA_LOGGER)
