"""The live side of the tour's transcripts: a real `ssed` with `--trace`,
its log read line by line as it grows, and raw TCP clients that send exact
bytes and read what comes back.

Nothing here sleeps for correctness. Every wait polls for a condition (a
log line, bytes on a socket) and gives up after `DEADLINE` seconds with a
message that says what it was waiting for; every loop is bounded by that
deadline or by a count.

The transcript is built in the order things are known to happen: the script
says what a client does (`Transcript.say`), does it, then waits for the
server's log lines that prove it was done. Only lines that some wait has
reached are ever put in a transcript, so a line the server logs later (a
heartbeat, a shutdown) can never slip in by luck of timing.
"""

import codecs
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import time

# Longest any single wait may take, in seconds. Generous: a loaded CI
# machine is slow, and a wait that succeeds returns as soon as it can.
DEADLINE = 30.0
POLL = 0.002

# Lines the server logs that say nothing about the exchange and differ from
# machine to machine.
DROPPED = [re.compile(r"^\[info\] open-file limit")]

TRACE = re.compile(r"^\[\S+ INFO  ssed::trace\]\s+[\d.]+ ms ((?:#\d+|redis/\w+) .*)$")
LOG = re.compile(r"^\[\S+ (\w+)\s+ssed[\w:]*\] (.*)$")


class TourError(Exception):
    """A scenario did not go as the tour says it does."""


class Server:
    """A real ssed on 127.0.0.1, port 0, with `--trace` and debug logs."""

    def __init__(self, binary, workdir, args, stdin=False):
        self.args = ["--listen", "127.0.0.1:0", "--trace", *args]
        self.log_path = os.path.join(workdir, "ssed.log")
        env = dict(os.environ, RUST_LOG="ssed=debug", RUST_LOG_STYLE="never")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, *self.args],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                preexec_fn=die_with_parent,
            )
        self._log = open(self.log_path, "rb")
        self._partial = b""
        self.lines = []  # normalized log lines, in order
        self.cursor = 0  # the next line a wait looks at
        self.mark = -1  # the last line a wait reached
        try:
            found = self.wait(r"^\[info\] listening on http://127\.0\.0\.1:(\d+)$")
            self.port = int(found.group(1))
            if stdin:
                self.wait(r"^\[info\] publishing each line of standard input")
        except BaseException:
            self.stop()
            raise

    def command(self):
        return "RUST_LOG=ssed=debug ssed " + " ".join(self.args)

    def _read_new(self):
        chunk = self._log.read()
        if not chunk:
            return
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            line = normalize(raw.decode("utf-8", "replace"))
            if line is not None:
                self.lines.append(line)

    def wait(self, pattern, what=None):
        """Waits for the next log line matching `pattern` (searched from the
        line after the last one a wait reached); returns its match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + DEADLINE
        while True:
            self._read_new()
            for index in range(self.cursor, len(self.lines)):
                found = regex.search(self.lines[index])
                if found:
                    self.cursor = index + 1
                    self.mark = max(self.mark, index)
                    return found
            if self.proc.poll() is not None:
                self._read_new()
                if not any(regex.search(line) for line in self.lines[self.cursor :]):
                    raise TourError(f"ssed exited ({self.proc.returncode}) before {what or pattern!r}")
                continue
            if time.monotonic() > deadline:
                tail = "\n  ".join(line[:160] for line in self.lines[-8:])
                raise TourError(f"no log line {what or pattern!r} within {DEADLINE} s; last lines:\n  {tail}")
            time.sleep(POLL)

    def wait_all(self, patterns, what=None):
        """Waits until each of `patterns` matches some line after the last
        one a wait reached, in whatever order they come (lines of two
        sockets that race, such as ssed's two connections to Redis), and
        moves past the last of them."""
        regexes = [re.compile(p) for p in patterns]
        deadline = time.monotonic() + DEADLINE
        while True:
            self._read_new()
            found = []
            for regex in regexes:
                index = next((i for i in range(self.cursor, len(self.lines)) if regex.search(self.lines[i])), None)
                found.append(index)
            if all(index is not None for index in found):
                self.cursor = max(found) + 1
                self.mark = max(self.mark, max(found))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise TourError(f"no log lines {what or patterns!r} within {DEADLINE} s")
            time.sleep(POLL)

    def seen(self, pattern):
        """Whether some line not yet reached by a wait matches (no waiting)."""
        self._read_new()
        regex = re.compile(pattern)
        return any(regex.search(line) for line in self.lines[self.cursor :])

    def feed_stdin(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=DEADLINE)
        finally:
            if self.proc.stdin:
                self.proc.stdin.close()
            self._log.close()


class Redis:
    """A throwaway redis-server for the bus's chapter: a Unix socket in the
    scenario's own directory, no persistence, killed when the scenario
    ends."""

    def __init__(self, workdir):
        self.socket = os.path.join(workdir, "redis.sock")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--dir", workdir,
             "--save", "", "--appendonly", "no", "--logfile", os.path.join(workdir, "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + DEADLINE
        while not self._pong():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TourError("redis-server did not answer PING")
            time.sleep(0.01)

    def url(self):
        return "redis+unix://" + self.socket

    def _pong(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1)
                probe.connect(self.socket)
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)


def die_with_parent():
    """In the child, before exec: on Linux, the kernel kills ssed if the
    script dies, however it dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def normalize(raw):
    """A log line as the transcript shows it: trace lines without their
    clock (`#1 < 12 B "..."`), other lines as `[info] ...`/`[debug] ...`."""
    found = TRACE.match(raw)
    if found:
        return found.group(1)
    found = LOG.match(raw)
    if found:
        line = f"[{found.group(1).lower()}] {found.group(2)}"
        return None if any(d.search(line) for d in DROPPED) else line
    return f"[?] {raw}"


class Transcript:
    """What a scenario shows: the command, what the clients did, and the
    server's log lines, in the order they happened."""

    def __init__(self, server):
        self.server = server
        self.items = ["$ " + server.command()]
        self._emitted = 0
        self.masks_from = []  # (item index, regex, replacement)

    def sync(self):
        """Takes every server line up to the last one a wait reached."""
        upto = self.server.mark + 1
        self.items.extend(self.server.lines[self._emitted : upto])
        self._emitted = max(self._emitted, upto)

    def say(self, who, text):
        self.sync()
        self.items.append(f"[{who}] {text}")

    def mask_from_here(self, pattern, replacement):
        """Masks `pattern` in everything shown from now on."""
        self.sync()
        self.masks_from.append((len(self.items), re.compile(pattern), replacement))

    def finish(self):
        self.sync()
        return self.items


class Client:
    """One TCP connection to the server, bytes in and out exactly."""

    def __init__(self, server, transcript, intro="connects", rcvbuf=None):
        self.server = server
        self.t = transcript
        transcript.say("client", intro)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Each send goes out at once, as one segment (no Nagle delay).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", server.port))
        local = self.sock.getsockname()[1]
        found = server.wait(rf"^\[debug\] #(\d+) accepted from 127\.0\.0\.1:{local}$", "the accept")
        self.id = int(found.group(1))
        self.name = f"client #{self.id}"
        # Nothing was sent yet: the read ssed tries at once finds nothing.
        server.wait(rf"^#{self.id} -- read: WouldBlock", "the read after accept")
        self.buffer = b""
        self.eof = False

    def say(self, text):
        self.t.say(self.name, text)

    def send(self, data):
        self.sock.sendall(data)

    def send_and_wait_read(self, data):
        """Sends `data` and waits until the server has read it, in one read."""
        self.send(data)
        self.server.wait(rf"^#{self.id} < {len(data)} B ", f"#{self.id} reading {len(data)} B")

    def _fill(self, deadline):
        if self.eof:
            raise TourError(f"{self.name}: the server closed the connection early")
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TourError(f"{self.name}: nothing arrived within {DEADLINE} s") from None
        if not data:
            self.eof = True
        self.buffer += data

    def read_until(self, done):
        """Reads until `done(buffer)` returns how many bytes to take."""
        deadline = time.monotonic() + DEADLINE
        while True:
            taken = done(self.buffer)
            if taken is not None:
                out, self.buffer = self.buffer[:taken], self.buffer[taken:]
                return out
            if self.eof:
                raise TourError(f"{self.name}: the connection ended early")
            self._fill(deadline)

    def read_head(self):
        """Reads one response head; returns (status, {name: value})."""
        raw = self.read_until(lambda b: b.index(b"\r\n\r\n") + 4 if b"\r\n\r\n" in b else None)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_response(self, head_only=False):
        """Reads one whole response with a Content-Length body."""
        status, headers = self.read_head()
        length = 0 if head_only or status in (100, 204) else int(headers.get("content-length", "0"))
        body = self.read_until(lambda b: length if len(b) >= length else None)
        return status, headers, body

    def read_to_eof(self):
        deadline = time.monotonic() + DEADLINE
        while not self.eof:
            self._fill(deadline)
        out, self.buffer = self.buffer, b""
        return out

    def close(self):
        self.sock.close()

    def close_after_server(self):
        """Reads to the server's EOF, waits for ssed's lingering read to find
        nothing (so the order of what follows never depends on who is
        faster), then closes, and waits for ssed to see the close."""
        self.read_to_eof()
        self.server.wait(rf"^#{self.id} -- read: WouldBlock", "the lingering read")
        self.close()
        self.server.wait(rf"^\[debug\] #{self.id} closed: PeerClosed$", "the close")

    def reset(self):
        """Closes with a TCP reset (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


class Stream(Client):
    """A subscriber: reads the response head, then the body (chunked or
    not) through a WHATWG event stream parser, and tells what a browser's
    `EventSource` would do with each line."""

    def subscribe(self, request, what):
        self.say(what)
        self.send_and_wait_read(request)

    def open(self):
        status, headers = self.read_head()
        self.chunked = headers.get("transfer-encoding") == "chunked"
        self.parser = EventStreamParser()
        self.dechunk = Dechunker() if self.chunked else None
        self.ended = False
        kind = headers.get("content-type", "")
        if status == 200 and kind == "text/event-stream":
            self.t.say(f"eventsource #{self.id}", f"open: status 200, Content-Type {kind}")
        else:
            self.t.say(f"eventsource #{self.id}", f"fails the connection: status {status}, Content-Type {kind!r}")
        return status, headers

    def _pump(self, deadline):
        """Parses what has arrived, reading more first if nothing has."""
        if not self.buffer and not self.eof:
            self._fill(deadline)
        data, self.buffer = self.buffer, b""
        if self.dechunk is not None:
            data = self.dechunk.feed(data)
            self.ended = self.ended or self.dechunk.done
        self.parser.feed(data, eof=self.eof)

    def expect(self, count, show=True):
        """Reads until the parser has reported `count` more things (an
        event, a `retry`, an ignored comment); shows them."""
        deadline = time.monotonic() + DEADLINE
        while len(self.parser.out) < count:
            if self.eof and not self.buffer:
                raise TourError(f"{self.name}: the stream ended after {self.parser.out}")
            self._pump(deadline)
        for line in self.parser.out[:count]:
            if show:
                self.t.say(f"eventsource #{self.id}", line)
        del self.parser.out[:count]

    def expect_end(self):
        """Reads to the end of the stream (the last chunk, or the close)."""
        deadline = time.monotonic() + DEADLINE
        while not self.eof or self.buffer:
            self._pump(deadline)
        for line in self.parser.out:
            self.t.say(f"eventsource #{self.id}", line)
        self.parser.out.clear()
        how = "after the last chunk" if self.ended else "without a last chunk"
        ended = f"the connection ended ({how}): it will reconnect after its reconnection time"
        self.t.say(f"eventsource #{self.id}", ended)


class Dechunker:
    """`Transfer-Encoding: chunked`, decoded (RFC 9112 §7.1)."""

    def __init__(self):
        self.pending = b""
        self.done = False

    def feed(self, data):
        self.pending += data
        out = b""
        while not self.done and b"\r\n" in self.pending:
            line, rest = self.pending.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                self.done = rest.startswith(b"\r\n")
                if self.done:
                    self.pending = rest[2:]
                break
            if len(rest) < size + 2:
                break
            out += rest[:size]
            self.pending = rest[size + 2 :]
        return out


class EventStreamParser:
    """The WHATWG HTML "Interpreting an event stream" steps, as a browser's
    `EventSource` runs them; `out` says what it did, one line each."""

    def __init__(self):
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""
        self.data = ""
        self.type = ""
        self.last_id_buffer = ""
        self.last_id = ""
        self.out = []

    def feed(self, data, eof=False):
        self.text += self.decoder.decode(data, final=eof)
        while True:
            ends = [i for i in (self.text.find("\r"), self.text.find("\n")) if i >= 0]
            if not ends:
                return
            at = min(ends)
            if self.text[at] == "\r" and at + 1 == len(self.text) and not eof:
                return  # a CR at the end may be the first half of a CRLF
            skip = 2 if self.text.startswith("\r\n", at) else 1
            line, self.text = self.text[:at], self.text[at + skip :]
            self.line(line)

    def line(self, line):
        if line == "":
            self.dispatch()
        elif line.startswith(":"):
            self.out.append(f"ignores the comment line {line!r}")
        else:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                self.type = value
            elif field == "data":
                self.data += value + "\n"
            elif field == "id" and "\0" not in value:
                self.last_id_buffer = value
            elif field == "retry" and value.isdigit() and value.isascii():
                self.out.append(f"reconnection time := {int(value)} ms")

    def dispatch(self):
        last_id = self.last_id_buffer
        if self.data == "":
            self.type = ""
            return
        data = self.data[:-1] if self.data.endswith("\n") else self.data
        kind = self.type or "message"
        self.last_id = last_id
        shown = json.dumps(data, ensure_ascii=False)
        if len(shown) > 100:
            shown = f"{shown[:40]}«{len(shown) - 48} more characters»{shown[-8:]}"
        self.out.append(f"event {kind!r}: data {shown}, lastEventId {last_id!r}")
        self.data = ""
        self.type = ""


def http(method, target, headers=(), body=None, version="HTTP/1.1"):
    """The bytes of one request: `Host: localhost`, then `headers`, then
    the body with its `Content-Length` (unless a header frames it)."""
    lines = [f"{method} {target} {version}", "Host: localhost", *headers]
    data = body.encode() if isinstance(body, str) else body
    if data is not None and not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (data or b"")
