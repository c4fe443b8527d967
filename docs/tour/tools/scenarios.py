"""The tour's scenarios: one per transcript, each a real exchange with a
fresh ssed. A scenario says what its clients do and waits for the log
lines that show the server did its part, in the order the code does it.
"""

import base64
import hashlib
import hmac
import json
import re
import signal
import time

from harness import Client, Redis, Server, Stream, TourError, Transcript, http

BROWSER = ("Accept: text/event-stream", "Cache-Control: no-cache")
JWT_SECRET = "the-tour-secret-is-at-least-32-bytes"
PUBLISH_TOKEN = "tour-publish-token"


class Run:
    """One scenario's server, transcript and clients."""

    def __init__(self, binary, workdir, args, stdin=False):
        self.server = Server(binary, workdir, ["--tick", "0", *args], stdin=stdin)
        self.t = Transcript(self.server)
        self.first_id = None
        self.clients = []
        self.keep_accept_note = False
        self.post = None

    def client(self, intro="connects", rcvbuf=None):
        client = Client(self.server, self.t, intro, rcvbuf)
        self.clients.append(client)
        return client

    def stream(self, target="/events", headers=BROWSER, version="HTTP/1.1", intro="connects", rcvbuf=None):
        """A subscriber that has sent `GET target` and read the greeting."""
        sub = Stream(self.server, self.t, intro, rcvbuf)
        self.clients.append(sub)
        sub.subscribe(http("GET", target, headers, version=version), f"GET {target} {version}")
        self.server.wait(rf"^#{sub.id} > ", "the stream's head")
        sub.open()
        sub.expect(2)
        return sub

    def ask(self, client, what, request, head_only=False):
        """Sends one request, waits for its answer's write, reads it."""
        client.say(what)
        client.send_and_wait_read(request)
        self.server.wait(rf"^#{client.id} > ", "the answer")
        return client.read_response(head_only)

    def publish(self, client, query, data, readers=(), headers=(), what=None):
        """POST /publish?query with `data`; each of `readers` (a stream, or
        a (stream, count) pair) then reports what it got."""
        target = f"/publish?{query}" if query else "/publish"
        shown = what or f"POST {target} with {len(data.encode())} bytes of data"
        status, _, body = self.ask(client, shown, http("POST", target, headers, data))
        if status == 200:
            answer = json.loads(body)
            if self.first_id is None:
                self.first_id = answer["id"]
        for reader in readers:
            stream, count = reader if isinstance(reader, tuple) else (reader, 1)
            stream.expect(count)
        return status, body

    def id(self, nth):
        """The real id of the run's nth event (0 is its first)."""
        return str(self.first_id + nth)

    def resume(self, intro, last_id, count):
        """A stream that comes back with `Last-Event-ID: last_id`: waits
        for its first write (the replay) and shows `count` things it got."""
        back = Stream(self.server, self.t, intro)
        self.clients.append(back)
        back.subscribe(http("GET", "/events", (*BROWSER, f"Last-Event-ID: {last_id}")), "GET /events with Last-Event-ID")
        self.server.wait(rf"^#{back.id} > ", "the replay")
        back.open()
        back.expect(count)
        return back

    def finish(self):
        items = self.t.finish()
        if not self.keep_accept_note:
            items = drop_accept_notes(items)
        if self.post:
            items = self.post(items)
        return items

    def close(self):
        for client in self.clients:
            client.close()
        self.server.stop()


def drop_accept_notes(items):
    """The WouldBlock note right after each accept (chapter 1 explains it
    once; later transcripts leave it out)."""
    out = []
    for item in items:
        accepted = re.match(r"^\[debug\] #(\d+) accepted", out[-1]) if out else None
        note = f"#{accepted.group(1)} -- read: WouldBlock" if accepted else None
        if note and item.startswith(note):
            continue
        out.append(item)
    return out


def jwt(claims):
    """An HS256 JWT signed with the tour's secret (RFC 7519)."""

    def part(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(JWT_SECRET.encode(), signed.encode(), hashlib.sha256).digest()
    return signed + "." + part(mac)


# --- the scenarios, in the tour's order ---------------------------------------


def accept(run):
    run.keep_accept_note = True
    s = run.server
    c = run.client("connects, and sends nothing yet")
    status, _, body = run.ask(c, "sends GET /healthz", http("GET", "/healthz"))
    c.say(f"reads {status} {body.decode()!r}, and closes")
    c.close()
    s.wait(rf"^\[debug\] #{c.id} closed: PeerClosed$")


def request(run):
    sub = run.stream(
        "/events?topic=news",
        headers=(*BROWSER, "Accept-Encoding: gzip, deflate, br", "Connection: keep-alive"),
        intro="connects (a browser's EventSource)",
    )
    pub = run.client("connects (a publisher)")
    plain = ("Content-Type: text/plain",)
    run.publish(pub, "topic=news&event=headline", "first line\nsecond line", [sub], headers=plain)


def parsing(run):
    s = run.server
    c = run.client()
    c.say("sends the start of a head, cut in the middle of a field name")
    c.send_and_wait_read(b"GET /healthz HTTP/1.1\r\nHo")
    c.say("sends the rest")
    c.send_and_wait_read(b"st: localhost\r\n\r\n")
    s.wait(rf"^#{c.id} > ", "the answer")
    c.read_response()
    run.ask(c, "sends two empty lines, then a request", b"\r\n\r\n" + http("GET", "/healthz"))
    bad = run.client()
    run.ask(bad, "sends a field name with a space in it", http("GET", "/healthz", ["Bad Name: x"]))
    bad.say("reads the 400, and the server's close")
    bad.close_after_server()
    many = run.client()
    fields = [f"X-{n}: y" for n in range(65)]
    run.ask(many, "sends a head with 65 field lines", http("GET", "/healthz", fields))
    many.close_after_server()


def routing(run):
    s = run.server
    c = run.client()
    run.ask(c, "GET /nope", http("GET", "/nope"))
    run.ask(c, "POST /events", http("POST", "/events", body=""))
    run.ask(c, "HEAD /events", http("HEAD", "/events"), head_only=True)
    preflight = http("OPTIONS", "/publish", ["Origin: http://app.test", "Access-Control-Request-Method: POST"])
    run.ask(c, "OPTIONS /publish (a browser's CORS preflight)", preflight)
    c.say("closes")
    c.close()
    s.wait(rf"^\[debug\] #{c.id} closed: PeerClosed$")


def stream_head(run):
    run.stream(intro="connects (a browser's EventSource)")


def chunks(run):
    sub = run.stream()
    pub = run.client()
    body = b"6\r\nhello \r\n6\r\nchunks\r\n0\r\n\r\n"
    chunked = ("Transfer-Encoding: chunked",)
    run.publish(pub, "", body, [sub], headers=chunked, what="POST /publish, its body in two chunks")
    run.publish(pub, "", "x" * 300, [sub], what="POST /publish with 300 bytes of data")


def encoding(run):
    sub = run.stream()
    pub = run.client()
    run.publish(pub, "event=headline", "first line\nsecond line", [sub])
    run.publish(pub, "", "carriage\r\nreturns\rtoo", [sub])
    run.publish(pub, "", " leading space", [sub])
    run.publish(pub, "", "", [sub])
    bad = http("POST", "/publish?event=bad%0Aname", body="x")
    run.ask(pub, "POST /publish?event=bad%0Aname (a line break in the name)", bad)
    pub.close_after_server()


def fanout(run):
    a = run.stream()
    b = run.stream()
    news = run.stream("/events?topic=news")
    pub = run.client()
    pub.say("sends three publishes at once, in one write")
    burst = b"".join(
        http("POST", f"/publish?topic={topic}", body=data)
        for topic, data in (("news", "one"), ("sport", "two"), ("news", "three"))
    )
    pub.send_and_wait_read(burst)
    run.server.wait(rf"^#{pub.id} > ", "the answers")
    for _ in range(3):
        _, _, body = pub.read_response()
        if run.first_id is None:
            run.first_id = json.loads(body)["id"]
    a.expect(3)
    b.expect(3)
    news.expect(2)


def slow(run):
    s = run.server
    stuck = run.stream(intro="connects with a 4 KiB receive buffer, and will stop reading", rcvbuf=4096)
    fast = run.stream(intro="connects, and reads everything")
    line = "x" * 16384
    run.t.say("stdin", f"a line of 16384 x's, published as one event; another each time #{fast.id} has read the last")
    published = 0
    for published in range(1, 4097):
        s.feed_stdin(line)
        if published == 1:
            s.wait(rf'^#{stuck.id} > \d+ B "[0-9a-f]+\\r\\nid: ', "the first event's write")
            s.wait(rf'^#{fast.id} > \d+ B "[0-9a-f]+\\r\\nid: ', "the first event's write")
        fast.expect(1, show=published == 1)
        if published == 1:
            run.first_id = int(fast.parser.last_id)
        if s.seen(rf"^\[debug\] #{stuck.id} closed: Evicted$"):
            break
    else:
        raise TourError("the reader that stopped was never evicted: are the kernel's socket buffers over 64 MiB?")
    s.wait(rf"^\[debug\] #{stuck.id} closed: Evicted$", "the eviction")
    fast.say(f"has read every event, each in one piece: nobody waited for #{stuck.id}")
    run.post = lambda items: collapse_slow(items, stuck.id, fast.id)


def collapse_slow(items, stuck, fast):
    """How many events the kernel buffers before a reader's writes block
    depends on its settings; the transcript shows the first event's writes,
    says the rest repeat, and keeps the first WouldBlock and the eviction."""
    first = next(i for i, item in enumerate(items) if re.match(rf'^#{stuck} > \d+ B "[0-9a-f]+\\r\\nid: ', item))
    end = next(i for i, item in enumerate(items) if item == f"[debug] #{stuck} closed: Evicted")
    kept, blocked, fast_shown = [items[first]], None, False
    for item in items[first + 1 : end]:
        if item.startswith(f"#{fast} > ") and not fast_shown:
            kept.append(item)
            fast_shown = True
        elif item.startswith(f"[eventsource #{fast}]") and fast_shown:
            kept.append(item)
        elif item.startswith(f"#{stuck} -- write: WouldBlock") and blocked is None:
            blocked = item
        elif not re.match(rf"^#({stuck}|{fast}) (>|-- write: short)", item):
            raise TourError(f"unexpected line while #{stuck} fell behind: {item[:120]}")
    if blocked is None:
        raise TourError(f"#{stuck} never saw WouldBlock")
    kept.append(
        f"  ... the same two writes for each next event, as long as the kernel takes #{stuck}'s whole\n"
        f"  ... (how many that is depends on its buffer sizes; the last may be short), until:"
    )
    kept.append(blocked)
    return items[:first] + kept + items[end:]


def disconnect(run):
    s = run.server
    leaving = run.stream()
    crashing = run.stream()
    leaving.say("closes its socket (the kernel sends a FIN)")
    leaving.close()
    s.wait(rf"^\[debug\] #{leaving.id} closed: PeerClosed$")
    crashing.say("resets its connection (the kernel sends an RST)")
    crashing.reset()
    s.wait(rf"^\[debug\] #{crashing.id} closed: ReadError$")
    pub = run.client()
    run.publish(pub, "", "anyone there?")


def replay(run):
    s = run.server
    sub = run.stream()
    pub = run.client()
    run.publish(pub, "", "one", [sub])
    sub.say("goes away (its laptop lid closes)")
    sub.close()
    s.wait(rf"^\[debug\] #{sub.id} closed: PeerClosed$")
    run.publish(pub, "", "two")
    run.publish(pub, "", "three")
    run.resume("connects again: the same EventSource, after its reconnection time", run.id(0), 4)


def gap(run):
    s = run.server
    pub = run.client()
    for data in ("e1", "e2", "e3", "e4"):
        run.publish(pub, "topic=news", data)
    for last_id, why in ((run.id(0), "an id history no longer holds"), ("42", "an id from before this process")):
        sub = Stream(s, run.t, "connects")
        run.clients.append(sub)
        request = http("GET", "/events?topic=news", (*BROWSER, f"Last-Event-ID: {last_id}"))
        sub.subscribe(request, f"GET /events?topic=news with Last-Event-ID: {why}")
        s.wait(rf"^#{sub.id} > ", "the replay")
        sub.open()
        sub.expect(5)


def heartbeat(run):
    sub = run.stream()
    sub.say("waits, reading")
    run.server.wait(rf'^#{sub.id} > \d+ B "[0-9a-f]+\\r\\n: ping', "the ping")
    sub.expect(1)


def shutdown(run):
    s = run.server
    chunked = run.stream(intro="connects (HTTP/1.1)")
    bare = run.stream(version="HTTP/1.0", intro="connects (HTTP/1.0)")
    idle = run.client("connects (keep-alive, between requests)")
    run.ask(idle, "GET /healthz", http("GET", "/healthz"))
    run.t.mask_from_here(r"(retry: |:= )\d{5}", r"\g<1>?????")
    run.t.say("signal", "SIGTERM (systemctl stop, docker stop, Ctrl-C)")
    s.signal(signal.SIGTERM)
    s.wait(r"^\[info\] shutting down: 3 connection\(s\) to close$")
    s.wait(rf"^\[debug\] #{idle.id} closed: Shutdown$")
    s.wait(rf"^#{chunked.id} > ", "the farewell")
    s.wait(rf"^\[debug\] #{chunked.id} closed: Finished$")
    s.wait(rf"^#{bare.id} > ", "the farewell")
    s.wait(rf"^\[debug\] #{bare.id} closed: Finished$")
    s.wait(r"^\[info\] bye$")
    chunked.expect_end()
    bare.expect_end()


def http10(run):
    s = run.server
    old = run.stream(version="HTTP/1.0", intro="connects (an HTTP/1.0 client)")
    new = run.stream(intro="connects (an HTTP/1.1 client)")
    pub = run.client()
    run.publish(pub, "", "hello, both", [new, old])
    old.say("reads it, and closes")
    old.close()
    s.wait(rf"^\[debug\] #{old.id} closed: PeerClosed$")


def pipeline(run):
    c = run.client()
    c.say("sends four requests at once, in one write, the last with Connection: close")
    c.send_and_wait_read(
        http("GET", "/healthz")
        + http("POST", "/publish?topic=news", body="pipelined")
        + http("GET", "/nope")
        + http("GET", "/healthz", ["Connection: close"])
    )
    run.server.wait(rf"^#{c.id} > ", "the answers")
    for _ in range(4):
        _, _, body = c.read_response()
        if body.startswith(b'{"id"') and run.first_id is None:
            run.first_id = json.loads(body)["id"]
    c.say("reads the four answers, then the server's close")
    c.close_after_server()
    old = run.client("connects (HTTP/1.0)")
    keep = http("GET", "/healthz", ["Connection: keep-alive"], version="HTTP/1.0")
    run.ask(old, "GET /healthz HTTP/1.0 with Connection: keep-alive", keep)
    run.ask(old, "GET /healthz HTTP/1.0", http("GET", "/healthz", version="HTTP/1.0"))
    old.close_after_server()


def tokens(run):
    s = run.server
    token = jwt({"sub": "user-42", "ssed": {"subscribe": ["user/42/*"]}})
    sub = Stream(s, run.t, "connects (user 42's browser)")
    run.clients.append(sub)
    run.ask(sub, "GET /events, no token", http("GET", "/events", BROWSER))
    bearer = f"Authorization: Bearer {token}"
    other = http("GET", "/events?topic=user/43/orders", (*BROWSER, bearer))
    run.ask(sub, "GET /events?topic=user/43/orders with user 42's token", other)
    sub.subscribe(http("GET", "/events", (*BROWSER, bearer)), "GET /events with user 42's token")
    s.wait(rf"^#{sub.id} > ", "the stream's head")
    sub.open()
    sub.expect(2)
    pub = run.client("connects (the backend)")
    auth = (f"Authorization: Bearer {PUBLISH_TOKEN}",)
    run.publish(pub, "topic=user/42/orders", "order 17 shipped", [sub], headers=auth)
    run.publish(pub, "topic=user/43/orders", "order 18 shipped", headers=auth)
    exp = int(time.time()) + 4
    short = jwt({"sub": "user-42", "exp": exp, "ssed": {"subscribe": ["user/42/*"]}})
    # The token's expiry, in the `reauth` event: the same width, masked.
    run.t.mask_from_here(r'(\{\\?"exp\\?":)\d{10}\}', r"\g<1>EXPIRES_AT}")
    late = Stream(s, run.t, "connects (another tab, with a token that expires in a few seconds, in the query)")
    run.clients.append(late)
    late.subscribe(http("GET", f"/events?token={short}", BROWSER), "GET /events?token=...")
    s.wait(rf"^#{late.id} > ", "the stream's head")
    late.open()
    late.expect(3)
    late.say("waits")
    s.wait(rf"^\[debug\] #{late.id} token expired$")
    s.wait(rf'^#{late.id} > 5 B "0\\r\\n\\r\\n"$', "the last chunk")
    late.expect_end()
    late.close_after_server()


def bus(run):
    """Chapter 18: one ssed over the bus. A subscriber gets an event that
    went to Redis and came back; then a client resumes from an id older
    than this process's history, and the rest comes from Redis (XRANGE).

    ssed's two connections to Redis work at the same time, so their lines
    interleave differently from run to run: each transcript shows one
    connection's side (`bus_tail`, `bus_commands`), whose order is fixed."""
    s = run.server
    # Start-up: each connection's handshake, the history read by the tail.
    s.wait_all([r"^\[info\] bus: connected", r"^\[info\] bus: history of"], "both connections up")
    s.wait_all([r"^redis/tail > .*XREAD"], "the first blocking read")
    sub = run.stream()
    pub = run.client()
    run.published_at = len(run.t.finish())
    run.sub, run.pub = sub.id, pub.id
    pub.say("POST /publish?topic=news with 5 bytes of data")
    pub.send_and_wait_read(http("POST", "/publish?topic=news", body="hello"))
    s.wait_all([rf"^#{pub.id} > ", rf"^#{sub.id} > ", r"^redis/tail > .*XREAD"], "the answer and the delivery")
    pub.read_response()
    sub.expect(1)
    run.cut = len(run.t.finish())
    sub.say("goes away")
    sub.close()
    s.wait(rf"^\[debug\] #{sub.id} closed: PeerClosed$")
    ids = []
    for data in ("two", "three", "four"):
        status, _, body = run.ask(pub, f"POST /publish?topic=news with {len(data)} bytes of data",
                                  http("POST", "/publish?topic=news", body=data))
        ids.append(json.loads(body)["id"])
    first = sub.parser.last_id
    run.resume("connects again, to a process whose history (--history 2) no longer holds its id", first, 5)


def bus_tail(run):
    """The tail's side: the publisher's answer (which races with the
    delivery) is the commands' side."""
    bus(run)
    cut, after, pub = run.cut, run.published_at, run.pub
    drop = (r"^redis/commands ", r"^\[info\] bus: connected")
    run.post = lambda items: side(items[:cut], drop, after, rf"^#{pub} > ")


def bus_commands(run):
    """The commands' side: the subscriber's delivery (which races with the
    publisher's answer) is the tail's side."""
    bus(run)
    after, sub = run.published_at, run.sub
    drop = (r"^redis/tail ", r"^\[info\] bus: history")
    run.post = lambda items: side(items, drop, after, rf"^#{sub} > ")


def side(items, drop, after, racing):
    """One connection's side of a bus transcript: the other connection's
    lines left out, from `after` on also the writes matching `racing`,
    and an `XREAD` that waited its whole 5 s for nothing (a nil reply and
    the read after it: how many there are depends on how long the machine
    took)."""
    out, skip_next_read = [], False
    for index, item in enumerate(items):
        if any(re.search(pattern, item) for pattern in drop):
            continue
        if index >= after and re.search(racing, item):
            continue
        if item.startswith('redis/tail < 5 B "*-1\\r\\n"'):
            skip_next_read = True
            continue
        if skip_next_read and item.startswith("redis/tail > "):
            skip_next_read = False
            continue
        out.append(item)
    return out


SCENARIOS = {
    "accept": (accept, []),
    "request": (request, []),
    "parsing": (parsing, []),
    "routing": (routing, []),
    "stream-head": (stream_head, []),
    "chunks": (chunks, []),
    "encoding": (encoding, []),
    "fanout": (fanout, []),
    "slow": (slow, ["--max-queue", "65536", "--stdin", "feed"]),
    "disconnect": (disconnect, []),
    "replay": (replay, []),
    "gap": (gap, ["--history", "2"]),
    "heartbeat": (heartbeat, ["--heartbeat", "0.25"]),
    "shutdown": (shutdown, ["--retry", "10000"]),
    "http10": (http10, []),
    "pipeline": (pipeline, []),
    "tokens": (tokens, ["--jwt-secret", JWT_SECRET, "--publish-token", PUBLISH_TOKEN]),
    "bus-tail": (bus_tail, ["--history", "2", "--bus", "{redis}"]),
    "bus-commands": (bus_commands, ["--history", "2", "--bus", "{redis}"]),
}


def run_scenario(name, binary, workdir):
    """Runs one scenario; returns (items, first id, masks)."""
    function, args = SCENARIOS[name]
    heartbeat_set = any(a == "--heartbeat" for a in args)
    redis = Redis(workdir) if "{redis}" in args else None
    if redis:
        args = [redis.url() if a == "{redis}" else a for a in args]
    try:
        run = Run(binary, workdir, [*([] if heartbeat_set else ["--heartbeat", "0"]), *args], stdin="--stdin" in args)
    except BaseException:
        if redis:
            redis.stop()
        raise
    if redis:
        # Where the socket is differs from run to run; this is where it
        # would be on a server (deploy/redis.conf).
        run.t.mask_from_here(re.escape(redis.url()), "redis+unix:///run/redis/redis.sock")
        run.t.items[0] = run.t.items[0].replace(redis.url(), "redis+unix:///run/redis/redis.sock")
    try:
        function(run)
        return run.finish(), run.first_id, run.t.masks_from
    except Exception:
        print(f"--- {name}: what happened so far ---")
        for item in run.t.finish():
            print(item[:200])
        raise
    finally:
        run.close()
        if redis:
            redis.stop()
