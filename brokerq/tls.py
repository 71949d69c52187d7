"""Say why a TLS connection fails, in words an operator can act on.

Drivers often report a failed handshake as "certificate verify failed" whatever the cause.
``handshake_error`` repeats the handshake with Python's ``ssl`` module, with the same CA,
client certificate and host name rule, and returns OpenSSL's precise reason (an unknown CA,
a host name the certificate does not cover, an expired certificate), or None when the
handshake succeeds. ``brokerq check`` uses it to name the reason in one line.
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["handshake_error"]


def handshake_error(
    host: str,
    port: int,
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    check_hostname: bool = True,
    timeout: float = 3.0,
) -> str | None:
    """The reason a TLS handshake with ``host:port`` fails (one line), or None if it succeeds.

    ``ca_file`` None means the system CAs. Connection errors (refused, timeout) are reasons
    too. Never raises for network or TLS errors.
    """
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.check_hostname = check_hostname
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        return f"TLS setup: {_reason(e)}"
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as e:
        return f"TLS certificate rejected: {e.verify_message or _reason(e)}"
    except ssl.SSLError as e:
        return f"TLS handshake failed: {_reason(e)}"
    except OSError as e:
        return f"cannot connect: {e.strerror or e}"


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    text = str(e)
    return f"{reason}: {text}" if reason and reason not in text else text
