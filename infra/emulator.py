"""The AWS emulator of the local stack: moto server, run inside this process.

In-process rather than as a child process, so nothing can outlive the local
stack: stopping it (or the process dying) takes the emulator with it. The
socket is bound in the caller's thread, so a port already in use fails at
once with ``OSError`` instead of leaving a server thread that never starts.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from werkzeug.serving import BaseWSGIServer, make_server


def _one_table_call_at_a_time(app: Callable[..., Any]) -> Callable[..., Any]:
    """moto's DynamoDB is not thread-safe (a TransactWriteItems copies a table
    while another request writes to it: "dictionary changed size during
    iteration"); DynamoDB itself is. Serialise the DynamoDB calls, as they are
    quick; every other service keeps its threads."""
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return serve


class Emulator:
    """moto server on ``host:port``; ``url`` is what AWS_ENDPOINT_URL is set to."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4566, verbose: bool = False) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        # The same application ThreadedMotoServer serves, bound here so that a
        # busy port raises in this thread.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        if not self.verbose:
            # One log line per emulator request (pollers ask every second) is noise.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = _one_table_call_at_a_time(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self.host, self.port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self.port = self._server.server_address[1]  # the real one when asked for port 0
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="aws-emulator", daemon=True)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None
