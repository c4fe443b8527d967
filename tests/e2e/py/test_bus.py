"""httpx + httpx-sse over the bus (`ssed --bus`): two processes on one real
redis-server, each on its own port.

A client with topic filters reads on process A, goes away, and comes back
to process B with the last id it saw on A. B keeps only two events
(`--history 2`), so most of what the client missed is fetched from Redis
(`XRANGE`) and the rest from B's history: the client must get exactly the
missed events of its topics, in order, once each, with no gap, and then the
live stream.
"""

import json
from urllib.parse import quote

import pytest

from conftest import wait_for


def bus_ssed(ssed_factory, redis, *args):
    server = ssed_factory("--bus", redis.url, "--tick", "0", "--heartbeat", "1", *args)
    server.wait_health(200)
    return server


def published(server, data, topic, event=None):
    answer = server.publish(data, topic=topic, event=event)
    assert isinstance(answer["id"], str), f"a bus id is a JSON string: {answer}"
    return answer["id"]


@pytest.mark.parametrize("how", ["Last-Event-ID header", "lastEventId query"])
def test_resume_on_another_process_through_redis_xrange(redis_server, ssed_factory, readers, how):
    a = bus_ssed(ssed_factory, redis_server)
    b = bus_ssed(ssed_factory, redis_server, "--history", "2")
    topics = {"news", "sport"}

    # On A: the client sees two events of its topics (not the weather).
    first = readers(f"{a.base}/events?topic=news,sport")
    first.find("connected", lambda e: e.event == "connected")
    seen = [
        published(a, "n1", "news"),
        published(b, "w1", "weather"),
        published(b, "s1", "sport"),
    ]
    first.find("s1", lambda e: e.id == seen[2])
    got = [(e.id, e.data) for e in list(first.events) if e.data and e.event != "connected"]
    assert got == [(seen[0], "n1"), (seen[2], "s1")]
    last_seen = first.last_id()
    assert last_seen == seen[2]
    first.close()

    # Published while it is away, to both processes, in three topics.
    plan = [
        (a, "n2", "news", None),
        (b, "w2", "weather", None),
        (b, "s2", "sport", "score"),
        (a, "n3\r\nsecond line", "news", "headline"),
        (a, "w3", "weather", None),
        (b, "s3", "sport", None),
        (a, "w4", "weather", None),
        (b, "n4", "news", None),
        (a, "s4 — ünïcödé", "sport", None),
        (b, "n5", "news", None),
    ]
    missed = []
    for server, data, topic, event in plan:
        event_id = published(server, data, topic, event)
        if topic in topics:
            missed.append((event_id, event or "message", data.replace("\r\n", "\n")))
    newest = missed[-1][0]
    # B has read all of it from Redis, and keeps the last two (s4, n5).
    wait_for("B's tail to reach the newest event", lambda: b.stats()["bus"]["last_id"] == newest)
    assert b.stats()["history"] == 2
    xrange_before = redis_server.calls("xrange")

    # On B, with the id seen on A.
    if how == "Last-Event-ID header":
        second = readers(f"{b.base}/events?topic=news,sport", headers={"Last-Event-ID": last_seen})
    else:
        second = readers(f"{b.base}/events?topic=news,sport&lastEventId={quote(last_seen)}")
    second.find("the last missed event", lambda e: e.id == newest)
    assert redis_server.calls("xrange") >= xrange_before + 2, "the replay asked Redis (XRANGE X X, then a page)"
    live = published(a, "n6 live", "news")
    published(b, "w5 live", "weather")
    second.find("the live event", lambda e: e.id == live)

    # Every event with data, without Reader.published()'s removal of repeated
    # ids (httpx-sse repeats the last id on each `: ping`, with empty data):
    # a duplicate sent by the server must show here.
    got = [(e.id, e.event, e.data) for e in list(second.events) if e.data and e.event not in ("connected", "gap")]
    assert got == [*missed, (live, "message", "n6 live")], "exactly the missed events of its topics, then live"
    assert second.named("gap") == [], "nothing was lost: no gap"
    assert len(second.named("connected")) == 1
    assert json.loads(second.named("connected")[0].data)["client"] >= 0
