"""Testing helpers that ship with brokerq.

For your handlers, without any server:

- ``StubBroker``: the in-memory broker (``brokerq.embedded.MemoryBroker``): push, run a
  ``Worker`` over ``broker.source``, then ``broker.join()`` waits until every job, retries
  included, is handled; ``broker.dead_letters()`` shows what failed.
- ``RecordingProducer`` / ``RecordingDelayProducer``: drop-in producers that record what your
  code sends (``.sent``), for code that pushes or schedules jobs.

For a backend (yours or ours): ``brokerq.testing.contract`` is the contract suite every
backend passes (needs pytest): subclass ``ProducerContract`` (and ``DelayContract``,
``FateContract``) and give them a ``broker`` fixture returning a fresh, isolated Broker.
"""

from brokerq.embedded.memory import MemoryBroker as StubBroker
from brokerq.testing.fakes import RecordingDelayProducer, RecordingProducer, Sent

__all__ = ["RecordingDelayProducer", "RecordingProducer", "Sent", "StubBroker"]
