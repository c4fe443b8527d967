"""Fixtures for the Python client tests: a real ssed on 127.0.0.1:0.

Every wait polls with a deadline; nothing sleeps to synchronise.
"""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
SSED_BIN = os.environ.get("SSED_BIN", str(REPO / "target" / "release" / "ssed"))
WAIT_S = 15.0


def wait_for(what, check, timeout=WAIT_S, interval=0.02):
    """Polls `check()` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Ssed:
    """The release binary, started on port 0; learns its port from the log."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [SSED_BIN, "--listen", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "info"},
            text=True,
        )
        self.log = []
        self._port = None
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

        def port():
            if self.proc.poll() is not None:
                raise AssertionError(f"ssed exited early: {''.join(self.log)}")
            return self._port

        self.port = wait_for("ssed to log its address", port)
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base, timeout=WAIT_S)

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if match and self._port is None:
                self._port = int(match.group(1))

    def publish(self, data, topic=None, event=None):
        params = {}
        if topic is not None:
            params["topic"] = topic
        if event is not None:
            params["event"] = event
        body = data.encode("utf-8") if isinstance(data, str) else data
        response = self.http.post("/publish", params=params, content=body)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self):
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def ssed_factory():
    started = []

    def start(*args):
        server = Ssed(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def ssed(ssed_factory):
    """A quiet server: no ticker; heartbeat every second keeps readers awake."""
    return ssed_factory("--tick", "0", "--heartbeat", "1")
