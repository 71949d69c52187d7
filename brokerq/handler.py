"""Turns a user function into ``call(message)``: import by name, payload decoding, sync or async.

The first parameter's annotation picks what the handler receives:
``Message`` (or none) → the envelope; ``bytes`` → the value; ``str`` → the value as UTF-8;
a pydantic model → the JSON value validated into it (failure → DecodeError → dead letter).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import BaseModel, ValidationError

from brokerq.errors import ConfigError, DecodeError, TimeLimitExceeded
from brokerq.message import Message


def import_handler(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (or ``package.module.function``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"handler {spec!r}: expected 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"handler {spec!r}: cannot import module {module_name!r}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"handler {spec!r}: module {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"handler {spec!r} is not callable")
    return typing.cast(Callable[..., Any], obj)


def _decoder(fn: Callable[..., Any]) -> Callable[[Message], Any]:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise ConfigError(f"handler {fn.__qualname__} must take one argument (the message)")
    ann = params[0].annotation
    if isinstance(ann, str):
        # A callable object (tests' Recorder) has its hints on __call__, not on itself.
        hinted = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn).__call__
        try:
            ann = typing.get_type_hints(hinted)[params[0].name]
        except Exception as e:
            raise ConfigError(
                f"handler {getattr(fn, '__qualname__', repr(fn))}: cannot resolve the annotation {ann!r} "
                f"of its parameter (define the type at module level): {e}"
            ) from e
    if ann is bytes:
        return lambda m: m.value
    if ann is str:

        def as_text(m: Message) -> str:
            try:
                return m.value.decode()
            except UnicodeDecodeError as e:
                raise DecodeError(f"message {m.id}: value is not UTF-8: {e}") from e

        return as_text
    if inspect.isclass(ann) and issubclass(ann, BaseModel):
        model: type[BaseModel] = ann

        def as_model(m: Message) -> BaseModel:
            try:
                return model.model_validate_json(m.value)
            except ValidationError as e:
                raise DecodeError(
                    f"message {m.id}: payload does not fit {model.__name__}: "
                    + "; ".join(
                        f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}"
                        for err in e.errors()
                    )
                ) from e

        return as_model
    return lambda m: m


class _LoopThread:
    """One shared event loop in a daemon thread for async handlers."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, Any]) -> Any:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="brokerq-async", daemon=True).start()
                cls._loop = loop
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


class Handler:
    """A callable ``handler(message)`` built from a user function (sync or async)."""

    def __init__(self, fn: Callable[..., Any] | str) -> None:
        self.fn = import_handler(fn) if isinstance(fn, str) else fn
        self.name = getattr(self.fn, "__qualname__", repr(self.fn))
        self._decode = _decoder(self.fn)
        self.is_async = inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            getattr(self.fn, "__call__", None)  # noqa: B004 - async callable objects
        )

    def __call__(self, message: Message, time_limit: float | None = None) -> None:
        """Run the handler on ``message``. An async handler still running after
        ``time_limit`` seconds is cancelled and TimeLimitExceeded raised (sync handlers are
        interrupted by the worker's watchdog, brokerq.timelimit)."""
        arg = self._decode(message)
        if not self.is_async:
            self.fn(arg)
        elif time_limit is None:
            _LoopThread.run(self.fn(arg))
        else:
            _LoopThread.run(_limited(self.fn(arg), time_limit))


async def _limited(coro: Coroutine[Any, Any, Any], limit: float) -> Any:
    """Await ``coro`` for up to ``limit`` seconds, then cancel it and raise TimeLimitExceeded
    (a TimeoutError the handler raises itself stays what it is)."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()
        await asyncio.wait({task})
        raise TimeLimitExceeded(f"handler ran past its time limit of {limit:.3g}s")
    return task.result()
