"""Turns a user function into ``call(message)``: import by name, payload decoding, sync or async.

A handler takes one parameter (more are allowed only with defaults); its annotation picks
what it receives:

- ``Message``, ``Any``, ``object`` or none → the envelope;
- ``bytes`` → the value; ``str`` → the value as UTF-8;
- anything a pydantic ``TypeAdapter`` can validate (``dict``, ``list[int]``, a model,
  ``list[Order]``, a TypedDict or dataclass, ``Order | None`` ...) → the JSON value validated
  into it. A value that does not fit raises DecodeError, so the message is dead-lettered
  at once without retries (retrying cannot make it fit).

Anything else is refused when the handler is built (``brokerq check`` and start-up), with a
ConfigError naming the handler and the parameter, never on the first message.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter, ValidationError

from brokerq.errors import ConfigError, DecodeError, TimeLimitExceeded
from brokerq.message import Message


def import_object(spec: str, what: str = "handler") -> Callable[..., Any]:
    """Import ``package.module:name`` (or ``package.module.name``) and return it.

    ConfigError naming ``what`` (handler, middleware) and ``spec`` when the spec is malformed,
    the module cannot be imported or raises while importing (a missing setting, a
    SyntaxError), the name is missing, or the object is not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(
            f"{what} {spec!r}: expected 'module:{'Class' if what == 'middleware' else 'function'}'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r}: {e}") from e
    except SyntaxError as e:
        raise ConfigError(
            f"{what} {spec!r}: module {module_name!r} has a syntax error: "
            f"{e.msg} ({e.filename}, line {e.lineno})"
        ) from e
    except (Exception, SystemExit) as e:
        raise ConfigError(
            f"{what} {spec!r}: importing module {module_name!r} raised {type(e).__name__}: {e}"
        ) from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r} is not callable")
    return typing.cast(Callable[..., Any], obj)


def import_handler(spec: str) -> Callable[..., Any]:
    """``import_object(spec, "handler")``."""
    return import_object(spec, "handler")


_ENVELOPE = (inspect.Parameter.empty, Message, Any, object)


def _payload_parameter(fn: Callable[..., Any], name: str) -> inspect.Parameter:
    """The parameter that receives the message; ConfigError when the handler cannot be called
    with exactly one argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        raise ConfigError(f"handler {name}: cannot read its signature: {e}") from e
    if not params:
        raise ConfigError(f"handler {name} must take one argument (the message)")
    first, rest = params[0], params[1:]
    if first.kind is inspect.Parameter.KEYWORD_ONLY or first.kind is inspect.Parameter.VAR_KEYWORD:
        raise ConfigError(
            f"handler {name}: parameter {first.name!r} is keyword-only; the message is "
            "passed as the one positional argument"
        )
    required = [
        p.name
        for p in rest
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        names = ", ".join(p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD)
        raise ConfigError(
            f"handler {name}({names}): parameter(s) {', '.join(map(repr, required))} have no "
            "default; a handler is called with one argument (the message or its payload)"
        )
    return first


def _annotation(fn: Callable[..., Any], param: inspect.Parameter, name: str) -> Any:
    ann = param.annotation
    if isinstance(ann, str):
        # A callable object (tests' Recorder) has its hints on __call__, not on itself.
        hinted = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn).__call__
        try:
            ann = typing.get_type_hints(hinted)[param.name]
        except Exception as e:
            raise ConfigError(
                f"handler {name}: cannot resolve the annotation {ann!r} of its parameter "
                f"{param.name!r} (define the type at module level): {e}"
            ) from e
    return ann


def _envelope(m: Message) -> Message:
    return m


def _decoder(fn: Callable[..., Any], name: str | None = None) -> Callable[[Message], Any]:
    name = name or _describe(fn)
    param = _payload_parameter(fn, name)
    if param.kind is inspect.Parameter.VAR_POSITIONAL:
        return _envelope
    ann = _annotation(fn, param, name)
    if any(ann is e for e in _ENVELOPE):
        return _envelope
    if ann is bytes:
        return lambda m: m.value
    if ann is str:

        def as_text(m: Message) -> str:
            try:
                return m.value.decode()
            except UnicodeDecodeError as e:
                raise DecodeError(f"message {m.id}: value is not UTF-8: {e}") from e

        return as_text
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(ann)
    except (PydanticUserError, TypeError, ValueError) as e:
        why = "pydantic cannot validate it from JSON"
        if not isinstance(e, PydanticSchemaGenerationError) and str(e):
            why = str(e).splitlines()[0]
        raise ConfigError(
            f"handler {name}: parameter {param.name!r}: annotation {_type_name(ann)} cannot be "
            f"decoded from a message: {why} (annotate Message, bytes, str, or a JSON type: "
            "dict, list[int], a BaseModel, list[Order], ...)"
        ) from e
    type_name = _type_name(ann)

    def as_type(m: Message) -> Any:
        try:
            return adapter.validate_json(m.value)
        except ValidationError as e:
            raise DecodeError(
                f"message {m.id}: payload does not fit {type_name}: "
                + "; ".join(
                    f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}"
                    for err in e.errors()
                )
            ) from e

    return as_type


def _describe(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function (what a config's ``handler:`` names), else its repr."""
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if qualname is None:
        return repr(fn)
    return f"{module}:{qualname}" if module else str(qualname)


def _type_name(ann: Any) -> str:
    if inspect.isclass(ann) and not typing.get_args(ann):
        return ann.__name__
    return repr(ann).replace("typing.", "")


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
        """ConfigError when ``fn`` (or the ``module:function`` it names) cannot be imported or
        cannot be called with one message (see the module doc)."""
        self.fn = import_handler(fn) if isinstance(fn, str) else fn
        self.name = getattr(self.fn, "__qualname__", repr(self.fn))
        self._decode = _decoder(self.fn, fn if isinstance(fn, str) else None)
        self.is_async = inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            getattr(self.fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        # The user function itself when it takes the envelope and is sync: the Worker calls
        # it directly (no decoding, no time-limit plumbing to pass), one call less a message.
        self.direct: Callable[[Message], Any] | None = (
            self.fn if self._decode is _envelope and not self.is_async else None
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
