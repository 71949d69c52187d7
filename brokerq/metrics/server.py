"""The exporter's HTTP server: ``/metrics``, ``/healthz`` and ``/readyz`` on a thread of its own.

``/metrics`` is prometheus_client's WSGI app over the given registry (text format, or
OpenMetrics when the scraper asks for it, gzip when accepted). ``/healthz`` and ``/readyz``
answer ``200 ok`` or ``503 <reason>`` in plain text from the callables given. The server is
prometheus_client's ``ThreadingWSGIServer`` (one thread per request, so a slow probe never
blocks a scrape); with ``certfile`` and ``keyfile`` it speaks HTTPS (stdlib ssl, TLS 1.2+).

It binds exactly the host it is given (brokerq.metrics.config keeps that on loopback unless
another address is written), unlike ``prometheus_client.start_http_server`` whose default
is every interface.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from brokerq.errors import ConfigError
from brokerq.metrics.config import MetricsConf, is_loopback
from brokerq.metrics.redact import redact

logger = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (a scrape every 15 s would drown the worker's own log)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _probe_app(probe: Probe) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            ok, text = probe()
        except Exception as e:  # a broken probe is a failed probe, never a 500 with a trace
            ok, text = False, f"{type(e).__name__}: {e}"
        body = (redact(text) + "\n").encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return app


class MetricsServer:
    """Serves a registry and two probes; ``start()`` binds (ConfigError if it cannot)."""

    def __init__(
        self, conf: MetricsConf, registry: CollectorRegistry, *, health: Probe, ready: Probe
    ) -> None:
        self.conf = conf
        self._metrics = make_wsgi_app(registry)
        self._routes = {
            "/healthz": _probe_app(health),
            "/readyz": _probe_app(ready),
        }
        self._httpd: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        route = self._routes.get(path)
        if route is not None:
            return route(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"brokerq exporter: /metrics, /healthz, /readyz\n"]

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked for."""
        assert self._httpd is not None, "not started"
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self.conf.tls else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        host, port = self.conf.host, self.conf.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingWSGIServer):
            address_family = family

        try:
            httpd = make_server(host, port, self._app, Server, handler_class=_QuietHandler)
        except OSError as e:
            raise ConfigError(f"metrics.listen {self.conf.listen}: cannot listen: {e}") from e
        if self.conf.certfile and self.conf.keyfile:
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(self.conf.certfile, self.conf.keyfile)
            except (OSError, ssl.SSLError) as e:
                httpd.server_close()
                raise ConfigError(f"metrics.certfile/keyfile: {e}") from e
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="brokerq-metrics-http", daemon=True
        )
        self._thread.start()
        if not is_loopback(self.address[0]):
            logger.warning(
                "metrics exporter listens on %s, reachable beyond this machine", self.url
            )
        logger.info("metrics on %s/metrics (health: /healthz, /readyz)", self.url)

    def close(self) -> None:
        """Stop serving and release the port; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
