"""httpx + httpx-sse as a client of ssed: named events, multi-line data,
unicode, ids, Last-Event-ID on reconnect (header and query forms), gaps and
topic filters.

A client here reconnects the way any non-browser client must: it remembers
the last id it saw and sends it as Last-Event-ID on its next request.
"""

import json

import httpx
import pytest


def test_stream_head_retry_and_connected(ssed, readers):
    reader = readers(f"{ssed.base}/events")
    head = reader.response.headers
    assert reader.response.status_code == 200
    assert reader.response.http_version == "HTTP/1.1"
    assert head["content-type"] == "text/event-stream"
    assert head["cache-control"] == "no-cache, no-transform"
    assert head["x-accel-buffering"] == "no"
    assert head["access-control-allow-origin"] == "*"
    assert head["transfer-encoding"] == "chunked"
    assert "content-length" not in head
    connected = reader.find("connected", lambda e: e.event == "connected")
    assert json.loads(connected.data)["client"] >= 0
    # httpx-sse hands back `retry:` as its own event (it dispatches a block
    # with only a retry field); the first thing on the stream is the hint.
    assert reader.events[0].retry == 3000


def test_named_and_unnamed_events_with_ids(ssed, readers):
    reader = readers(f"{ssed.base}/events")
    reader.find("connected", lambda e: e.event == "connected")
    plain = ssed.publish("plain", topic="news")
    named = ssed.publish("named", topic="news", event="headline")
    got_plain = reader.find("plain", lambda e: e.data == "plain")
    got_named = reader.find("named", lambda e: e.data == "named")
    assert (got_plain.event, got_plain.id) == ("message", str(plain["id"]))
    assert (got_named.event, got_named.id) == ("headline", str(named["id"]))
    assert named["id"] > plain["id"]
    assert plain["subscribers"] == 1


@pytest.mark.parametrize(
    "sent, expected",
    [
        ("one\ntwo\nthree", "one\ntwo\nthree"),
        ("crlf\r\nline", "crlf\nline"),
        ("cr\rline", "cr\nline"),
        ("mixed\r\n\r\nblank\rand\nall", "mixed\n\nblank\nand\nall"),
        ("trailing newline\n", "trailing newline\n"),
        ("\nleading newline", "\nleading newline"),
        (" leading space", " leading space"),
        ("data: fake\nid: 7\nevent: fake\nretry: 1", "data: fake\nid: 7\nevent: fake\nretry: 1"),
        (": not a comment", ": not a comment"),
        ("tab\there", "tab\there"),
    ],
    ids=repr,
)
def test_multiline_data_reassembled_exactly(ssed, readers, sent, expected):
    reader = readers(f"{ssed.base}/events")
    reader.find("connected", lambda e: e.event == "connected")
    published = ssed.publish(sent)
    got = reader.find("the event", lambda e: e.id == str(published["id"]) and e.event == "message")
    assert got.data == expected


def test_unicode_intact(ssed, readers):
    reader = readers(f"{ssed.base}/events")
    reader.find("connected", lambda e: e.event == "connected")
    short = "héllo wörld — 世界 🎉 e\u0301 👩\u200d💻 ∑ ﷽"
    long = "🎉🌍日本語ünïcödé\n" * 1500  # ~44 KB: split across many reads
    a = ssed.publish(short)
    b = ssed.publish(long)
    assert reader.find("short", lambda e: e.id == str(a["id"])).data == short
    assert reader.find("long", lambda e: e.id == str(b["id"])).data == long


def test_reconnect_with_last_event_id_header_replays_what_was_missed(ssed, readers):
    first = readers(f"{ssed.base}/events?topic=orders")
    a = ssed.publish("order 1", topic="orders", event="order")
    first.find("order 1", lambda e: e.id == str(a["id"]))
    last_seen = first.last_id()
    assert last_seen == str(a["id"])
    first.close()  # the connection drops

    missed = [ssed.publish(f"order {n}", topic="orders", event="order") for n in (2, 3, 4)]
    ssed.publish("not for us", topic="other")

    second = readers(f"{ssed.base}/events?topic=orders", headers={"Last-Event-ID": last_seen})
    second.find("the last missed event", lambda e: e.id == str(missed[-1]["id"]))
    live = ssed.publish("order 5", topic="orders", event="order")
    second.find("the live event", lambda e: e.id == str(live["id"]))
    orders = [(e.id, e.data) for e in second.published()]
    assert orders == [(str(m["id"]), f"order {n}") for m, n in zip(missed, (2, 3, 4))] + [
        (str(live["id"]), "order 5")
    ]
    assert second.named("gap") == []
    assert all(e.data != "not for us" for e in second.events)


def test_last_event_id_query_parameter(ssed, readers):
    a = ssed.publish("a")
    b = ssed.publish("b")
    reader = readers(f"{ssed.base}/events?lastEventId={a['id']}")
    got = reader.find("the replayed event", lambda e: e.id == str(b["id"]))
    assert got.data == "b"
    assert reader.named("gap") == []
    assert all(e.data != "a" for e in reader.events)


@pytest.mark.parametrize("stale", ["1", "not-a-number", "99999999999999999999", "-5"], ids=repr)
def test_gap_when_the_server_cannot_vouch(ssed, readers, stale):
    kept = ssed.publish("kept")
    reader = readers(f"{ssed.base}/events", headers={"Last-Event-ID": stale})
    gap = reader.find("the gap event", lambda e: e.event == "gap")
    body = json.loads(gap.data)
    assert body == {"last_event_id": stale, "oldest": kept["id"]}
    # Then what is retained, so nothing is lost silently.
    replayed = reader.find("the retained event", lambda e: e.id == str(kept["id"]))
    assert replayed.data == "kept"
    assert reader.events.index(gap) < reader.events.index(replayed)


def test_future_id_gets_a_gap(ssed, readers):
    newest = ssed.publish("newest")
    future = str(newest["id"] + 1000)
    reader = readers(f"{ssed.base}/events", headers={"Last-Event-ID": future})
    gap = reader.find("the gap event", lambda e: e.event == "gap")
    assert json.loads(gap.data)["last_event_id"] == future


@pytest.mark.parametrize("query", ["topic=alpha,beta", "topic=alpha&topic=beta"])
def test_topic_filters(ssed, readers, query):
    reader = readers(f"{ssed.base}/events?{query}")
    reader.find("connected", lambda e: e.event == "connected")
    ssed.publish("to alpha", topic="alpha")
    ssed.publish("to gamma", topic="gamma")
    ssed.publish("to default")
    last = ssed.publish("to beta", topic="beta")
    reader.find("the beta event", lambda e: e.id == str(last["id"]))
    assert [e.data for e in reader.published()] == ["to alpha", "to beta"]


def test_every_topic_without_a_filter_and_ticks_as_a_topic(ssed_factory, readers):
    server = ssed_factory("--tick", "0.2")
    everything = readers(f"{server.base}/events")
    ticks_only = readers(f"{server.base}/events?topic=tick")
    a = server.publish("one", topic="alpha")
    b = server.publish("two")
    everything.find("b", lambda e: e.id == str(b["id"]))
    everything.find("a tick", lambda e: e.event == "tick")
    assert [e.data for e in everything.published()] == ["one", "two"]
    ticks_only.find("two ticks", lambda e: len(ticks_only.named("tick")) >= 2)
    assert not any(e.id for e in ticks_only.events), "ticks carry no id"
    assert a["subscribers"] == 1, "the tick-only stream is not a subscriber of alpha"


def test_topic_filter_passed_as_params_is_percent_encoded(ssed, readers):
    """httpx encodes `news,alerts` as news%2Calerts; ssed must decode it."""
    url = httpx.URL(f"{ssed.base}/events", params={"topic": "news,alerts"})
    assert "%2C" in str(url)
    reader = readers(str(url))
    reader.find("connected", lambda e: e.event == "connected")
    ssed.publish("n", topic="news")
    ssed.publish("x", topic="other")
    last = ssed.publish("a", topic="alerts")
    reader.find("the alerts event", lambda e: e.id == str(last["id"]))
    assert [e.data for e in reader.published()] == ["n", "a"]


def test_heartbeat_arrives_and_changes_nothing(ssed_factory, readers):
    server = ssed_factory("--tick", "0", "--heartbeat", "0.2")
    reader = readers(f"{server.base}/events")
    sent = server.publish("only one")
    reader.find("the event", lambda e: e.id == str(sent["id"]))
    # Each `: ping` surfaces in httpx-sse as an empty event repeating the id.
    reader.find("two heartbeats", lambda e: sum(1 for x in reader.events if x.id and x.data == "") >= 2)
    assert [e.data for e in reader.published()] == ["only one"]
