"""Embedded brokers: a sqlite file shared by worker processes, and an in-process memory queue.

``SqliteBroker`` needs no server and keeps jobs across restarts; ``MemoryBroker`` is the stub
users test their handlers against. Both read the ``embedded:`` config section (``EmbeddedConf``).
"""

from brokerq.embedded.config import EmbeddedConf
from brokerq.embedded.memory import MemoryBroker
from brokerq.embedded.sqlite import SqliteBroker

__all__ = ["EmbeddedConf", "MemoryBroker", "SqliteBroker"]
