"""The one place boto3 clients are made: lazily, once per process and service.

Endpoints come from botocore's own configuration (``AWS_ENDPOINT_URL`` points
every client at the emulator locally). Retries use botocore's standard mode;
timeouts are short because a Lambda has a time limit of its own.
"""
from __future__ import annotations

import threading
from typing import Any

from chalicelib.settings import get_settings

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def client(service: str) -> Any:
    """A shared boto3 client for ``service`` in the configured region."""
    region = get_settings().region
    key = (service, region)
    if key not in _clients:
        with _lock:
            if key not in _clients:
                import boto3  # deferred: keeps boto3 off the import path of handlers that never call it
                from botocore.config import Config

                config = Config(retries={"mode": "standard", "max_attempts": 3},
                                connect_timeout=3, read_timeout=10)
                _clients[key] = boto3.session.Session().client(service, region_name=region, config=config)
    return _clients[key]


def forget_clients() -> None:
    """Drop cached clients (tests that restart the emulator)."""
    with _lock:
        _clients.clear()
