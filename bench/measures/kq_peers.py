"""kq vs the Python peers a user would pick instead: FastStream (aiokafka) and taskiq's Kafka
broker (taskiq-aio-kafka), push and no-op consume, per message and batch, each against its like.

Push (100 B, acks=1, first call to last ack):
- brokerq: ``Pusher.push`` per message, then ``flush()`` (its push is already batched by the
  client, and there is no separate batch call: the same figure stands on both push rows).
- FastStream: ``await broker.publish(v, topic, no_confirm=True)`` per message, then the
  futures awaited; batch: ``publish_batch(*500 values, no_confirm=True)`` with
  ``max_batch_size`` 256 KiB (the default 16 KiB overflows at ~100 records).
- taskiq: ``await task.kiq(v)`` per message (its broker sends each with ``send_and_wait``);
  batch: no batch call, so 500 ``kiq`` at a time under ``asyncio.gather``. Its records are
  taskiq's JSON envelope around the 100 B argument.

Consume (N records, fresh group per repetition, first handled to N-th):
- brokerq: Queue with a no-op handler (8 processors); batch: ``list[Message]`` handler,
  max_size 500 (kq_batch).
- FastStream: ``@broker.subscriber(topic, group_id, auto_offset_reset="earliest")`` no-op;
  batch: ``batch=True, max_records=500``. Its per-message logging is off (``logger=None``),
  which only helps it.
- taskiq: the ``Receiver`` of ``taskiq worker`` in process on a topic filled by taskiq; no
  batch handlers (n/a).

Target (issue 16): brokerq >= 1.5x each peer on every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.driver import Run
from bench.harness import Figures, run_python
from bench.measure import Measure
from bench.measures import kq_batch, kq_consume, kq_push
from bench.timing import FirstToNth, payload

BATCH = 500
ACKS = 1
PEERS = ("faststream", "taskiq")


# -- FastStream -------------------------------------------------------------------------------
def faststream_push(n: int, topic: str, bootstrap: str, batch: bool = False) -> Figures:
    """FastStream's KafkaBroker.publish (or publish_batch) ``n`` 100 B values (child)."""
    from faststream.kafka import KafkaBroker

    async def main() -> float:
        # a batch of 500 x 100 B needs more than aiokafka's default 16 KiB batch buffer
        size = 256 * 1024 if batch else 16 * 1024  # 16 KiB: aiokafka's and FastStream's default
        broker = KafkaBroker(bootstrap, acks=ACKS, logger=None, max_batch_size=size)
        await broker.connect()
        value = payload(100)
        start = time.perf_counter()
        futures: list[Any] = []
        if batch:
            for lo in range(0, n, BATCH):
                values = [value] * (min(n, lo + BATCH) - lo)
                futures.append(await broker.publish_batch(*values, topic=topic, no_confirm=True))
        else:
            for _ in range(n):
                futures.append(await broker.publish(value, topic, no_confirm=True))
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
        await broker.stop()
        return elapsed

    return {"count": n, "elapsed_s": asyncio.run(main()), "batch": batch}


def faststream_consume(
    n: int, topic: str, group: str, bootstrap: str, batch: bool = False
) -> Figures:
    """A FastStream subscriber (no-op) from the earliest offset until N are handled (child)."""
    from faststream.kafka import KafkaBroker

    counter = FirstToNth(n)

    async def main() -> float:
        broker = KafkaBroker(bootstrap, logger=None)
        if batch:

            @broker.subscriber(
                topic,
                group_id=group,
                auto_offset_reset="earliest",
                batch=True,
                max_records=BATCH,
            )
            async def handle_batch(bodies: list[bytes]) -> None:
                counter.add(len(bodies))

        else:

            @broker.subscriber(topic, group_id=group, auto_offset_reset="earliest")
            async def handle(body: bytes) -> None:
                counter.hit()

        await broker.start()
        while not counter.done.is_set():
            await asyncio.sleep(0.02)
        elapsed = counter.result(0)
        # its stop can hang once the group has fallen apart (a no-op handler starves the
        # heartbeat): the figure is taken, give it 10 s
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.stop(), 10)
        return elapsed

    return {"count": n, "elapsed_s": asyncio.run(asyncio.wait_for(main(), 240)), "batch": batch}


# -- taskiq -----------------------------------------------------------------------------------
def _taskiq(bootstrap: str, topic: str, counter: FirstToNth | None = None) -> tuple[Any, Any]:
    from aiokafka.partitioner import DefaultPartitioner
    from taskiq_aio_kafka import AioKafkaBroker

    broker = AioKafkaBroker(bootstrap, kafka_topic=topic)
    # taskiq-aio-kafka 1.0 defaults to kafka-python's DefaultPartitioner, which kafka-python
    # 3 no longer makes callable ("object is not callable" on every kiq): aiokafka's own
    # partitioner, the same murmur2 rule, through the broker's documented option
    broker.configure_producer(acks=ACKS, partitioner=DefaultPartitioner())

    @broker.task(task_name="bench_noop")  # type: ignore[untyped-decorator]
    async def noop(value: str) -> None:
        if counter is not None:
            counter.hit()

    return broker, noop


def taskiq_push(n: int, topic: str, bootstrap: str, batch: bool = False) -> Figures:
    """``await noop.kiq(v)`` ``n`` times; with ``batch`` 500 at a time under gather (child)."""

    async def main() -> float:
        broker, noop = _taskiq(bootstrap, topic)
        await broker.startup()
        value = payload(100).decode()
        start = time.perf_counter()
        if batch:
            for lo in range(0, n, BATCH):
                await asyncio.gather(*(noop.kiq(value) for _ in range(min(n, lo + BATCH) - lo)))
        else:
            for _ in range(n):
                await noop.kiq(value)
        elapsed = time.perf_counter() - start
        await broker.shutdown()
        return elapsed

    return {"count": n, "elapsed_s": asyncio.run(main()), "batch": batch}


def taskiq_consume(n: int, topic: str, group: str, bootstrap: str) -> Figures:
    """taskiq's Receiver (what ``taskiq worker`` runs) until N tasks ran (child)."""
    from taskiq.receiver import Receiver

    counter = FirstToNth(n)

    async def main() -> float:
        broker, _noop = _taskiq(bootstrap, topic, counter)
        broker.is_worker_process = True
        # the same kafka-python 3 break for its default assignor: aiokafka's RoundRobin
        from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        broker.configure_consumer(
            group_id=group,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
        )
        await broker.startup()
        finish = asyncio.Event()
        receiver = Receiver(broker, run_startup=False)
        listening = asyncio.create_task(receiver.listen(finish))
        while not counter.done.is_set():
            if listening.done():
                listening.result()  # raises what stopped it
                raise RuntimeError("taskiq receiver stopped")
            await asyncio.sleep(0.02)
        elapsed = counter.result(0)
        finish.set()
        listening.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 10)
        return elapsed

    return {"count": n, "elapsed_s": asyncio.run(asyncio.wait_for(main(), 240))}


def na(reason: str) -> Figures:
    """A row's side that has no such API."""
    return {"na": reason}


# -- the measure ------------------------------------------------------------------------------
def _both(r: Run, rows: dict[str, str], call: Any, rep: int) -> None:
    """brokerq once, its figure standing on every row of ``rows`` (measure -> label)."""
    (m0, l0), *rest = rows.items()
    fig = r.measure(m0, "brokerq", l0, call, rep)
    if fig is not None:
        for m, label in rest:
            r.samples.append(dict(fig, measure=m, label=label))


def _label(what: str, peer: str) -> str:
    return f"{what} vs {'FastStream' if peer == 'faststream' else 'taskiq'}"


def run(r: Run) -> None:
    kafka = r.settings.kafka
    n_push = r.n("kq.push.100")
    n_serial = r.n("peer.taskiq.serial")
    n_tq = r.n("peer.taskiq")
    n = r.n("kq.consume")
    topics = {k: r.topic(f"peer{k}") for k in ("b", "fs", "fsb", "tq", "tqb")}
    filled = kq_batch.fill(r, "peercons", n)
    tq_topic = r.topic("peertqc")
    r.progress.step(f"fill {tq_topic} with {n_tq:,} taskiq messages")
    run_python(taskiq_push, 600, n=n_tq, topic=tq_topic, bootstrap=kafka, batch=True)
    push, pushb = "kq push 100 B acks=1", "kq push 100 B acks=1, batch"
    cons, consb = "kq consume no-op", f"kq consume no-op, batch handlers of {BATCH}"
    for rep in range(r.reps):
        g = f"{r.settings.run_id}-{rep}"
        # push: one brokerq figure on the four push rows
        rows = {f"kq.peer.push.{p}": _label(push, p) for p in PEERS}
        rows.update({f"kq.peer.pushbatch.{p}": _label(pushb, p) for p in PEERS})
        args = {"n": n_push, "size": 100, "acks": str(ACKS), "bootstrap": kafka}
        _both(r, rows, r.py(kq_push.brokerq, topic=topics["b"], **args), rep)
        for p, fn in (("faststream", faststream_push), ("taskiq", taskiq_push)):
            fs = p == "faststream"
            t = topics["fs" if fs else "tq"]
            call = r.py(fn, 600, n=n_push if fs else n_serial, topic=t, bootstrap=kafka)
            r.measure(f"kq.peer.push.{p}", p, _label(push, p), call, rep)
            t = topics["fsb" if fs else "tqb"]
            call = r.py(fn, 600, n=n_push if fs else n_tq, topic=t, bootstrap=kafka, batch=True)
            r.measure(f"kq.peer.pushbatch.{p}", p, _label(pushb, p), call, rep)
        # consume
        rows = {f"kq.peer.consume.{p}": _label(cons, p) for p in PEERS}
        call = r.py(kq_consume.brokerq, n=n, topic=filled, group=f"pb-{g}", bootstrap=kafka)
        _both(r, rows, call, rep)
        rows = {f"kq.peer.consumebatch.{p}": _label(consb, p) for p in PEERS}
        call = r.py(kq_batch.brokerq, n=n, topic=filled, group=f"pbb-{g}", bootstrap=kafka)
        _both(r, rows, call, rep)
        label = _label(cons, "faststream")
        # FastStream handles ~5 k/s one by one here: the taskiq N (rates are rates)
        call = r.py(faststream_consume, n=n_tq, topic=filled, group=f"pf-{g}", bootstrap=kafka)
        r.measure("kq.peer.consume.faststream", "faststream", label, call, rep)
        label = _label(consb, "faststream")
        call = r.py(
            faststream_consume, n=n, topic=filled, group=f"pfb-{g}", bootstrap=kafka, batch=True
        )
        r.measure("kq.peer.consumebatch.faststream", "faststream", label, call, rep)
        label = _label(cons, "taskiq")
        call = r.py(taskiq_consume, n=n_tq, topic=tq_topic, group=f"pt-{g}", bootstrap=kafka)
        r.measure("kq.peer.consume.taskiq", "taskiq", label, call, rep)
        label = _label(consb, "taskiq")
        r.measure(
            "kq.peer.consumebatch.taskiq",
            "taskiq",
            label,
            lambda: na("taskiq has no batch handlers"),
            rep,
        )


MEASURE = Measure(name="kq-peers", key="peers", run=run, steps=11, extra_steps=2)
