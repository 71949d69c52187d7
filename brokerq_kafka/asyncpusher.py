"""``AsyncPusher``: the kq ``Pusher`` for asyncio code; push never blocks the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException

from brokerq.errors import DeliveryError
from brokerq_kafka.pusher import Pusher


class AsyncPusher:
    """``Pusher`` for asyncio code: push never blocks the loop; flush/close run off-loop."""

    def __init__(self, brokers: str | Sequence[str], topic: str, **options: Any) -> None:
        self.pusher = Pusher(brokers, topic, **options)

    async def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one message (with ``sync``: await the broker's ack)."""
        pusher = self.pusher
        deadline = time.monotonic() + pusher.push_timeout
        future: asyncio.Future[Any] | None = None
        report: Callable[[Any, Any], None] | None = None
        if pusher.sync:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            fut = future

            def settle(err: Any) -> None:
                if not fut.done():
                    fut.set_result(err)

            def report(err: Any, record: Any) -> None:
                loop.call_soon_threadsafe(settle, err)

        while True:
            try:
                pusher.try_push(value, key, headers, report)
                break
            except BufferError:
                if time.monotonic() >= deadline:
                    raise DeliveryError(
                        f"kafka {pusher.topic!r}: local queue still full after "
                        f"push_timeout={pusher.push_timeout}s"
                    ) from None
                await asyncio.sleep(0.005)
        if future is not None:
            try:
                err = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise DeliveryError(
                    f"kafka {pusher.topic!r}: no acknowledgement within "
                    f"push_timeout={pusher.push_timeout}s"
                ) from None
            if err is not None:
                raise pusher._error(KafkaException(err))

    async def flush(self, timeout: float | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.pusher.flush, timeout)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.pusher.close)

    async def __aenter__(self) -> AsyncPusher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
