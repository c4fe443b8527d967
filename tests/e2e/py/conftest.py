"""Fixtures for the Python client tests: a real ssed on 127.0.0.1:0, a
Reader that follows one stream with httpx-sse in a thread, and a throwaway
redis-server for the bus (`ssed --bus`).

Every wait polls with a deadline; nothing sleeps to synchronise.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

REPO = Path(__file__).resolve().parents[3]
SSED_BIN = os.environ.get("SSED_BIN", str(REPO / "target" / "release" / "ssed"))
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
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

    def stats(self):
        return self.http.get("/stats").json()

    def wait_health(self, status, timeout=WAIT_S):
        """Polls /healthz until it answers `status` (the bus: 200 once both
        Redis connections are up, 503 `bus down` otherwise)."""

        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"ssed exited: {''.join(self.log)}")
            try:
                return self.http.get("/healthz").status_code == status
            except httpx.TransportError:
                return False

        wait_for(f"/healthz {status} on port {self.port}", check, timeout=timeout)

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


class Redis:
    """A throwaway redis-server on a Unix socket in a temporary directory, as
    tools/testkit/src/redis.rs starts one for the Rust tests:

        redis-server --port 0 --unixsocket DIR/redis.sock --dir DIR --save ''
                     --appendonly yes --appendfsync always     (aof=True)
                     --appendonly no                           (aof=False)

    Ready once PING answers +PONG. A missing redis-server fails the test,
    with a hint; it never skips."""

    def __init__(self, aof=True):
        # Short: a Unix socket's path must fit in 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="ssed-e2e-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.url = f"redis+unix://{self.socket}"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
        args = ["--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700", "--dir", self.dir]
        args += ["--save", "", "--daemonize", "no", "--logfile", "redis.log", *persistence]
        try:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AssertionError(
                f"cannot run {REDIS_SERVER}: not found (install the Debian package "
                "redis-server, as ./test.sh does, or set REDIS_SERVER)"
            ) from None

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited at start: {self.log_tail()}")
            try:
                return self.command("PING") == "+PONG"
            except OSError:
                return False

        try:
            wait_for("redis-server to answer PING", ready)
        except BaseException:
            self.stop()
            raise

    def command(self, text):
        """One inline command on a fresh connection: a status line, or a bulk
        string's contents."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(self.socket)
            conn.sendall(text.encode() + b"\r\n")
            data = b""
            for _ in range(10_000):
                chunk = conn.recv(65536)
                if not chunk:
                    raise OSError(f"redis {text}: closed after {data!r}")
                data += chunk
                head, sep, rest = data.partition(b"\r\n")
                if not sep:
                    continue
                if not head.startswith(b"$"):
                    return head.decode()
                size = int(head[1:])
                if len(rest) >= size:
                    return rest[:size].decode()
            raise OSError(f"redis {text}: reply too long")

    def calls(self, name):
        """How many times Redis ran `name` (INFO commandstats), 0 if never."""
        info = self.command("INFO commandstats")
        match = re.search(rf"^cmdstat_{name.lower()}:calls=(\d+)", info, re.M)
        return int(match.group(1)) if match else 0

    def log_tail(self, n=20):
        try:
            return "".join(Path(self.dir, "redis.log").read_text().splitlines(True)[-n:])
        except OSError:
            return "(no redis.log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server():
    """redis-server with its append-only file on, killed and removed after the test."""
    server = Redis(aof=True)
    yield server
    server.stop()


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
