"""The beanstalkd protocol, written once: one connection class and one reply parser for the
producer and the pipelined consumer (the admin side uses greenstalk).

Source of the rules: beanstalkd's ``doc/protocol.txt``.

- Names (tubes) are ASCII letters, digits and ``-+/;.$_()``, 1..200 bytes, not starting with
  a hyphen (``check_tube``); anything else is refused with BAD_FORMAT.
- Priorities, delays and TTRs are unsigned 32-bit integers (``check_put``): beanstalkd answers
  a larger one with BAD_FORMAT *and then reads the job body as a command* (UNKNOWN_COMMAND),
  so the connection is out of step. We check before sending, and any answer that leaves the
  stream in doubt (BAD_FORMAT, UNKNOWN_COMMAND, EXPECTED_CRLF, an unexpected status) closes
  the connection: a command is never read against another command's answer.

Errors: socket errors and a closed stream → ConnectionFailed; a reply that breaks the
protocol → ProtocolError (a ConnectionFailed: the connection is closed); each names the node.
"""

from __future__ import annotations

import re
import socket
from typing import BinaryIO

from brokerq.errors import ConnectionFailed

UINT32_MAX = 2**32 - 1
MAX_TUBE = 200
TUBE_RULE = (
    "beanstalkd tube names are 1-200 ASCII letters, digits and - + / ; . $ _ ( ), "
    "not starting with a hyphen"
)
_TUBE = re.compile(r"[A-Za-z0-9+/;.$_()][A-Za-z0-9\-+/;.$_()]*")

#: Answers after which the stream is out of step: the connection must be closed.
DESYNC = frozenset({b"BAD_FORMAT", b"UNKNOWN_COMMAND", b"EXPECTED_CRLF"})

#: Success statuses of the commands on a reserved job.
SETTLED = {
    b"delete": (b"DELETED",),
    b"release": (b"RELEASED", b"BURIED"),
    b"bury": (b"BURIED",),
    b"touch": (b"TOUCHED",),
}


class ProtocolError(ConnectionFailed):
    """beanstalkd answered something that leaves the connection out of step; it is closed."""


def check_tube(tube: str) -> str:
    """``tube`` unchanged, or ValueError naming it and beanstalkd's naming rule."""
    if not (len(tube) <= MAX_TUBE and tube.isascii() and _TUBE.fullmatch(tube)):
        raise ValueError(f"tube {tube!r} is refused by beanstalkd: {TUBE_RULE}")
    return tube


def check_put(priority: int, delay: int, ttr: int) -> None:
    """ValueError unless every field of a ``put`` fits beanstalkd's 32-bit integers."""
    for name, value, low in (("priority", priority, 0), ("delay", delay, 0), ("ttr", ttr, 1)):
        if not low <= value <= UINT32_MAX:
            raise ValueError(
                f"beanstalkd {name} must be in {low}..{UINT32_MAX} (32-bit), got {value}"
            )


class Conn:
    """One connection to one node: send bytes, read answer lines and job bodies.

    Not thread-safe: one owner. Any error closes it (``closed`` is then True).
    """

    def __init__(self, endpoint: str, address: tuple[str, int], timeout: float) -> None:
        self.endpoint = endpoint
        try:
            sock = socket.create_connection(address, timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise ConnectionFailed(f"beanstalkd {endpoint}: {e}") from e
        self._sock: socket.socket | None = sock
        self._reader: BinaryIO | None = sock.makefile("rb")

    @property
    def closed(self) -> bool:
        return self._sock is None

    def settimeout(self, seconds: float) -> None:
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def close(self) -> None:
        sock, reader = self._sock, self._reader
        self._sock = self._reader = None
        for closable in (reader, sock):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass

    def _fail(self, what: object) -> ConnectionFailed:
        self.close()
        return ConnectionFailed(f"beanstalkd {self.endpoint}: {what or 'connection error'}")

    def send(self, data: bytes) -> None:
        if self._sock is None:
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: connection closed")
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise self._fail(e) from e

    def line(self, what: str = "") -> list[bytes]:
        """The next answer line, split on spaces; a DESYNC answer closes the connection.
        ``what``: the command answered, named in errors."""
        if self._reader is None:
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: connection closed")
        try:
            raw = self._reader.readline()
        except OSError as e:
            raise self._fail(e) from e
        if not raw.endswith(b"\r\n"):
            raise self._fail("connection closed")
        parts = raw[:-2].split()
        if not parts or parts[0] in DESYNC:
            self.close()
            answer = raw[:-2].decode(errors="replace") or "empty answer"
            raise ProtocolError(
                f"beanstalkd {self.endpoint}: {what + ': ' if what else ''}{answer} "
                "(connection closed: out of step)"
            )
        return parts

    def body(self, size: int) -> bytes:
        """A job body of ``size`` bytes and its CRLF."""
        assert self._reader is not None
        try:
            data = self._reader.read(size + 2)
        except OSError as e:
            raise self._fail(e) from e
        if len(data) != size + 2:
            raise self._fail("connection closed")
        return data[:-2]

    def unexpected(self, command: str, parts: list[bytes]) -> ProtocolError:
        """A reply the command does not allow: close the connection and say so."""
        self.close()
        text = b" ".join(parts).decode(errors="replace")
        return ProtocolError(f"beanstalkd {self.endpoint}: {command}: unexpected answer {text!r}")

    def command(self, data: bytes, ok: bytes, name: str) -> list[bytes]:
        """Send one command and read its answer; anything but ``ok`` closes the connection."""
        self.send(data)
        parts = self.line(name)
        if parts[0] != ok:
            raise self.unexpected(name, parts)
        return parts[1:]

    def use(self, tube: str) -> None:
        """``use tube``; a refusal closes the connection, so it never puts into ``default``."""
        if tube != "default":
            self.command(b"use %s\r\n" % tube.encode(), b"USING", f"use {tube}")

    def watch_only(self, tube: str) -> None:
        """Watch ``tube`` and nothing else."""
        if tube != "default":
            self.command(b"watch %s\r\n" % tube.encode(), b"WATCHING", f"watch {tube}")
            self.command(b"ignore default\r\n", b"WATCHING", "ignore default")
