"""The running local stack, once per test session, driven over real HTTP.

The fixture starts ``python -m infra.local_stack`` exactly as ``make run`` does
(on free ports, with known keys), waits for GET /health and the ready banner,
and at the end stops it with SIGTERM and checks that it exits cleanly, logged
no traceback and let go of its ports.
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import requests

PROJECT_DIR = Path(__file__).resolve().parents[2]
WRITE_KEY = "e2e-write-key"
ADMIN_TOKEN = "e2e-admin-token"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
READY_LINE = "Nudge local stack is ready"
#: A message that went out: ``sent``, then ``delivered`` once SES reports it (the
#: local stack publishes SES's events half a second after each email).
SENT = ("sent", "delivered")
#: How long an asynchronous path (bus -> queue -> handler) may take here.
DELIVERY_TIMEOUT = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class Stack:
    url: str
    endpoint_url: str
    write_key: str
    admin_token: str
    bus: str
    log_path: Path

    def write_auth(self, key: str | None = None) -> dict[str, str]:
        token = base64.b64encode(f"{key or self.write_key}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def admin_auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10,
                             headers=self.write_auth() if headers is None else headers)

    def admin_get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(self.url + path, timeout=10,
                            headers=self.admin_auth() if headers is None else headers)

    def profile(self, user_id: str) -> requests.Response:
        return self.admin_get(f"/v1/profiles/{user_id}")

    def messages(self, user_id: str) -> list[dict[str, Any]]:
        """The person's message history ([] for someone not seen yet)."""
        return self._listed(f"/v1/profiles/{user_id}/messages?limit=500", "messages")

    def decisions(self, user_id: str) -> list[dict[str, Any]]:
        """Why each trigger did or did not fire for the person ([] for someone not seen yet)."""
        return self._listed(f"/v1/profiles/{user_id}/decisions?limit=500", "decisions")

    def _listed(self, path: str, key: str) -> list[dict[str, Any]]:
        response = self.admin_get(path)
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        return response.json()[key]

    def history(self, user_id: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every stored event of a person, newest first, following the cursor."""
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = f"?limit={page_size}" + (f"&cursor={cursor}" if cursor else "")
            response = self.admin_get(f"/v1/profiles/{user_id}/events{query}")
            if response.status_code == 404:
                return []
            assert response.status_code == 200, response.text
            body = response.json()
            events.extend(body["events"])
            cursor = body["next"]
            if not cursor:
                return events

    def physical_id(self, logical_id: str) -> str:
        """The emulator's name for one of the template's resources."""
        from infra.local_stack import STACK_NAME
        from infra.template import physical_ids

        return physical_ids(self.aws_client("cloudformation"), STACK_NAME)[logical_id]

    def aws_client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="e2e", aws_secret_access_key="e2e")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def eventually(probe: Callable[[], T | None], timeout: float = DELIVERY_TIMEOUT, interval: float = 0.2,
               what: str = "the condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if the test process dies (Linux), so a
    killed test run leaves no stack behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_stack(env_overrides: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_overrides}
    log_file = log_path.open("wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "infra.local_stack"], cwd=PROJECT_DIR, env=env,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    finally:
        log_file.close()


@contextlib.contextmanager
def running_stack(log_dir: Path, name: str = "the local stack",
                  env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start a local stack on free ports, wait until it is ready, yield it, then
    stop it with SIGTERM and check it exited cleanly, logged no traceback and
    let go of its ports."""
    port, aws_port = free_port(), free_port()
    log_path = log_dir / "local_stack.log"
    process = start_stack({"PORT": str(port), "AWS_PORT": str(aws_port), "NUDGE_WRITE_KEY": WRITE_KEY,
                           "NUDGE_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                healthy = requests.get(url + "/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                healthy = False
            if healthy and READY_LINE in log_path.read_text(errors="replace"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not ready within {START_TIMEOUT:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield Stack(url=url, endpoint_url=f"http://127.0.0.1:{aws_port}", write_key=WRITE_KEY,
                    admin_token=ADMIN_TOKEN, bus="nudge", log_path=log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"{name} did not stop on SIGTERM:\n{_tail(log_path)}")
    log = log_path.read_text(errors="replace")
    assert process.returncode == 0, f"{name} exited with {process.returncode}:\n{_tail(log_path)}"
    assert "Traceback" not in log, f"{name} logged an unexpected error:\n{log}"
    assert port_is_free(port) and port_is_free(aws_port), f"{name} left a port bound"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("local-stack")) as running:
        yield running
