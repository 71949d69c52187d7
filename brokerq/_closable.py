"""``_Closable``: context-manager support for the contracts (brokerq.broker, brokerq.source).

Anything with an idempotent ``close()`` is usable in ``with``; split from brokerq.broker so
that brokerq.source and brokerq.broker share it without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TypeVar

Self = TypeVar("Self", bound="_Closable")


class _Closable(ABC):
    """Context-manager support for anything with ``close()``; close must be idempotent."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
