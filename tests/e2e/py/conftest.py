"""Fixtures for the Python client tests: a real ssed on 127.0.0.1:0, and a
Reader that follows one stream with httpx-sse in a thread.

Every wait polls with a deadline; nothing sleeps to synchronise.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

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

    def post_publish(self, data, topic=None, event=None, token=None):
        """POST /publish, with `Authorization: Bearer <token>` when given;
        returns the response, whatever its status."""
        params = {}
        if topic is not None:
            params["topic"] = topic
        if event is not None:
            params["event"] = event
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = data.encode("utf-8") if isinstance(data, str) else data
        return self.http.post("/publish", params=params, content=body, headers=headers)

    def publish(self, data, topic=None, event=None, token=None):
        """Publishes and returns the answer ({"id": N, "subscribers": M})."""
        response = self.post_publish(data, topic=topic, event=event, token=token)
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


class Reader:
    """Reads one SSE stream in a thread, recording every event it yields."""

    def __init__(self, url, headers=None):
        self.url = url
        self.headers = dict(headers or {})
        self.events = []
        self.error = None
        self.response = None
        self._sock = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._opened.wait(WAIT_S):
            raise AssertionError(f"stream {url} did not open")
        if self.error:
            raise self.error

    def _run(self):
        try:
            timeout = httpx.Timeout(WAIT_S, read=None)
            with httpx.Client(timeout=timeout) as client:
                with connect_sse(client, "GET", self.url, headers=self.headers) as source:
                    self.response = source.response
                    stream = source.response.extensions.get("network_stream")
                    self._sock = stream.get_extra_info("socket") if stream else None
                    self._opened.set()
                    for sse in source.iter_sse():
                        self.events.append(sse)
        except Exception as err:  # recorded; a test asserts on it if it cares
            self.error = err
        finally:
            self._opened.set()

    def find(self, what, pred):
        return wait_for(what, lambda: next((e for e in list(self.events) if pred(e)), None))

    def named(self, name):
        return [e for e in list(self.events) if e.event == name]

    def published(self):
        """Published events, once each. httpx-sse 0.4.3 also yields the
        `retry:` block, and every `: ping` heartbeat after an id was seen, as
        a nameless event with empty data (repeating the last id); skip them."""
        seen = set()
        out = []
        for e in list(self.events):
            if e.id and e.id not in seen and e.event not in ("connected", "tick", "gap", "reauth"):
                seen.add(e.id)
                out.append(e)
        return out

    def last_id(self):
        ids = [e.id for e in list(self.events) if e.id]
        return ids[-1] if ids else None

    def wait_end(self, timeout=WAIT_S):
        """Waits for the server to end the stream; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self):
        """Drops the connection from the client side, as a network failure would."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "reader thread did not end"


@pytest.fixture
def readers():
    opened = []

    def open_reader(url, headers=None):
        reader = Reader(url, headers)
        opened.append(reader)
        return reader

    yield open_reader
    for reader in opened:
        reader.close()
