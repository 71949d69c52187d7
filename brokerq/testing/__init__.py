"""Testing helpers that ship with brokerq.

For your handlers, without any server:

- ``StubBroker``: the in-memory broker (``brokerq.embedded.MemoryBroker``): push, run a
  worker with ``running(broker, handler)``, then ``broker.join()`` waits until every job,
  retries included, is handled; ``broker.dead_letters()`` shows what failed.
- ``RecordingProducer`` / ``RecordingDelayProducer``: drop-in producers that record what your
  code sends (``.sent``), for code that pushes or schedules jobs.

For a backend (yours or ours): ``brokerq.testing.contract`` is the contract suite every
backend passes (needs pytest): subclass ``ProducerContract`` (and ``DelayContract``,
``FateContract``) and give them a ``broker`` fixture returning a fresh, isolated Broker.

Against real servers: ``brokerq.testing.servers`` says where the local services are
(beanstalkd, Redis, Kafka), probes whether they answer, and sets up / cleans up the names a
test or a benchmark uses (Kafka topics, beanstalkd tubes, Redis key prefixes). It imports
neither pytest nor a driver at module level; tests/, bench/ and scripts/services share it.
"""

from brokerq.embedded.memory import MemoryBroker as StubBroker
from brokerq.testing.fakes import RecordingDelayProducer, RecordingProducer, Sent
from brokerq.testing.run import consuming_in_thread, running

__all__ = [
    "RecordingDelayProducer",
    "RecordingProducer",
    "Sent",
    "StubBroker",
    "consuming_in_thread",
    "running",
]
