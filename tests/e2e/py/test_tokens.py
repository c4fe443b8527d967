"""Subscriber tokens (JWT) from a Python client: tokens made by PyJWT, an
independent library, against `ssed --jwt-secret`; hostile tokens forged by
hand, as an attacker would.

What a token grants is in its claims:

    {"exp": 1790000000, "sub": "user-42",
     "ssed": {"subscribe": ["news", "user/42/*"], "publish": ["user/42/*"]}}

Every refusal is a one-line answer that never echoes the token, and leaves
every other stream served.
"""

import base64
import hashlib
import hmac
import json
import socket
import time

import httpx
import jwt
import pytest

from conftest import WAIT_S, wait_for

# HS256 wants at least 32 bytes; 64 also keeps PyJWT quiet about HS512 below.
SECRET = "e2e-python-secret-" + "x" * 46
assert len(SECRET) == 64


def make_token(subscribe=(), publish=(), exp_in=3600, **claims):
    """An HS256 token signed by PyJWT with the server's secret."""
    payload = {"sub": "user-42", "ssed": {"subscribe": list(subscribe), "publish": list(publish)}}
    if exp_in is not None:
        payload["exp"] = int(time.time()) + exp_in
    payload.update(claims)
    return jwt.encode(payload, SECRET, algorithm="HS256")


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def forge(header, claims, key=SECRET.encode()):
    """A token with exactly this header and these claims, signed with
    HMAC-SHA256 whatever the header says: no library makes the tokens an
    attacker sends."""
    signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()
    return f"{signed}.{b64url(signature)}"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def server(ssed_factory):
    """A quiet server that wants tokens."""
    return ssed_factory("--tick", "0", "--heartbeat", "1", "--jwt-secret", SECRET)


@pytest.fixture
def publisher():
    """A token that may publish anywhere and read nothing."""
    return make_token(publish=["*"])


def raw_get(server, target):
    """GET `target` over a bare socket: httpx will not send a URL this long.
    Returns the answer as an httpx.Response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
        try:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent: the answer is still there to read
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return httpx.Response(status, content=body)


def refused(server, target, headers=None, params=None):
    """GET a stream that must be refused: the answer comes whole and the
    connection closes, so a plain request will do."""
    return httpx.get(f"{server.base}{target}", headers=headers or {}, params=params, timeout=WAIT_S)


@pytest.mark.parametrize("carrier", ["header", "cookie", "query"])
def test_a_subscriber_sees_only_its_topics(server, readers, publisher, carrier):
    token = make_token(subscribe=["news", "user/42/*"])
    url, headers = f"{server.base}/events", {}
    if carrier == "header":
        headers = bearer(token)
    elif carrier == "cookie":
        headers = {"Cookie": f"theme=dark; ssed_token={token}"}
    else:
        url += f"?token={token}"
    reader = readers(url, headers)
    assert reader.response.status_code == 200
    reader.find("connected", lambda e: e.event == "connected")
    for topic in ["user/43", "user/42/orders", "secret", "news", "newsletter", "user/42"]:
        server.publish(topic, topic=topic, token=publisher)
    last = server.publish("the end", topic="news", token=publisher)
    reader.find("the last event", lambda e: e.id == str(last["id"]))
    assert [e.data for e in reader.published()] == ["user/42/orders", "news", "the end"]


def test_a_pattern_covers_every_depth_under_it_and_nothing_beside(server, readers, publisher):
    token = make_token(subscribe=["news/*"])
    named = readers(f"{server.base}/events?topic=news/*", bearer(token))
    unnamed = readers(f"{server.base}/events", bearer(token))
    for reader in (named, unnamed):
        reader.find("connected", lambda e: e.event == "connected")
    for topic in ["news/a", "newsletter", "news", "news/a/b", "news-x/a"]:
        server.publish(topic, topic=topic, token=publisher)
    last = server.publish("last", topic="news/z", token=publisher)
    for reader in (named, unnamed):
        reader.find("the last event", lambda e: e.id == str(last["id"]))
        assert [e.data for e in reader.published()] == ["news/a", "news/a/b", "last"]


def hostile_tokens():
    """(name, token, reason): every kind of token that must not open a
    stream, and the reason the answer gives."""
    now = int(time.time())
    claims = {"ssed": {"subscribe": ["*"]}}
    good = make_token(subscribe=["news"])
    head, body, signature = good.split(".")
    unsigned = jwt.encode(claims, None, algorithm="none")
    altered = b64url(json.dumps(claims).encode())
    other_secret = "another-secret-" + "y" * 40
    alg = "alg must be HS256"
    mismatch = "signature does not match"
    cases = [
        ("alg none", unsigned, alg),
        ("alg none, HS256 signature kept", unsigned + signature, alg),
        ("alg None", forge({"alg": "None"}, claims), alg),
        ("no alg", forge({"typ": "JWT"}, claims), alg),
        ("HS512", jwt.encode(claims, SECRET, algorithm="HS512"), alg),
        # Key confusion: RS256 in the header, yet HMAC with the secret.
        ("RS256 header", forge({"alg": "RS256", "typ": "JWT"}, claims), alg),
        ("altered claims", f"{head}.{altered}.{signature}", mismatch),
        ("wrong secret", jwt.encode(claims, other_secret, algorithm="HS256"), mismatch),
        ("no signature", f"{head}.{body}.", mismatch),
        ("expired", make_token(subscribe=["news"], exp_in=-10), "token expired"),
        ("expires now", make_token(subscribe=["news"], exp=now), "token expired"),
        ("exp as a string", make_token(exp_in=None, exp=str(now + 3600)), "exp is not a number"),
        ("bad base64 in the header", f"!!{head}.{body}.{signature}", "header is not base64url"),
        ("bad base64 in the claims", f"{head}.{body}!!.{signature}", mismatch),
        ("bad base64 in the signature", f"{head}.{body}.{signature}!!", "signature is not base64url"),
        ("two parts", f"{head}.{body}", "three base64url parts"),
        ("four parts", f"{good}.{signature}", "three base64url parts"),
        ("claims not an object", forge({"alg": "HS256"}, ["news"]), "claims are not base64url JSON"),
        ("subscribe not a list", forge({"alg": "HS256"}, {"ssed": {"subscribe": "a"}}), "lists of"),
        ("sub not a string", forge({"alg": "HS256"}, {"sub": 42}), "sub is not a string"),
    ]
    return [pytest.param(token, why, id=name) for name, token, why in cases]


@pytest.mark.parametrize("token, why", hostile_tokens())
@pytest.mark.parametrize("carrier", ["header", "query"])
def test_hostile_tokens_get_401_and_a_bystander_is_unaffected(
    server, readers, publisher, token, why, carrier
):
    bystander = readers(f"{server.base}/events?topic=by", bearer(make_token(subscribe=["by"])))
    bystander.find("connected", lambda e: e.event == "connected")
    if carrier == "header":
        response = refused(server, "/events?topic=news", bearer(token))
    else:
        params = {"topic": "news", "token": token}
        response = httpx.get(f"{server.base}/events", params=params, timeout=WAIT_S)
    assert response.status_code == 401, response.text
    assert response.text.startswith("unauthorized: ") and response.text.count("\n") <= 1, response.text
    assert why in response.text
    assert token.split(".")[0] not in response.text, "the body never echoes the token"
    sent = server.publish("still here", topic="by", token=publisher)
    assert bystander.find("its event", lambda e: e.id == str(sent["id"])).data == "still here"


@pytest.mark.parametrize(
    "carrier, statuses", [("header", {431}), ("cookie", {431}), ("query", {414, 431})]
)
def test_a_100_kb_token_is_refused_before_it_is_read(server, readers, publisher, carrier, statuses):
    bystander = readers(f"{server.base}/events?topic=by", bearer(make_token(subscribe=["by"])))
    bystander.find("connected", lambda e: e.event == "connected")
    # A real, well-signed token, padded out with a 100 KB claim.
    huge = make_token(subscribe=["news"], pad="p" * 100 * 1024)
    assert len(huge) > 100 * 1024
    if carrier == "header":
        response = refused(server, "/events", bearer(huge))
    elif carrier == "cookie":
        response = refused(server, "/events", {"Cookie": f"ssed_token={huge}"})
    else:
        response = raw_get(server, f"/events?token={huge}")
    assert response.status_code in statuses, response.text
    assert "ppppp" not in response.text and len(response.text) < 200
    sent = server.publish("still here", topic="by", token=publisher)
    assert bystander.find("its event", lambda e: e.id == str(sent["id"])).data == "still here"


def test_no_token_is_401(server):
    for headers in [
        None,
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Cookie": "ssed_token="},
    ]:
        response = refused(server, "/events", headers)
        assert response.status_code == 401, headers
        assert response.text.startswith("unauthorized: a token is needed"), response.text


@pytest.mark.parametrize("asked", ["user/43", "*", "user/*", "user/42/a,user/43", "user/4/*", "news"])
def test_asking_for_more_than_the_token_covers_is_403(server, readers, asked):
    token = make_token(subscribe=["user/42/*"])
    response = refused(server, "/events", bearer(token), params={"topic": asked})
    assert response.status_code == 403, response.text
    assert token not in response.text
    # What it does cover opens.
    for inside in ["user/42/orders", "user/42/*", "user/42/a/*", "user/42/a,user/42/b"]:
        reader = readers(f"{server.base}/events?topic={inside}", bearer(token))
        assert reader.response.status_code == 200, inside


def test_a_token_granting_no_topics_is_403(server):
    response = refused(server, "/events", bearer(make_token(publish=["news"])))
    assert response.status_code == 403, response.text


def test_a_publish_token_publishes_only_inside_its_patterns(server, readers):
    writer = make_token(publish=["user/42/*"])
    reader = readers(f"{server.base}/events", bearer(make_token(subscribe=["*"])))
    reader.find("connected", lambda e: e.event == "connected")

    inside = server.post_publish("mine", topic="user/42/orders", token=writer)
    assert inside.status_code == 200, inside.text
    assert inside.json()["subscribers"] == 1
    outside = server.post_publish("not mine", topic="user/43/orders", token=writer)
    assert outside.status_code == 403, outside.text
    assert server.post_publish("no pattern", topic="user/42", token=writer).status_code == 403
    reader_token = make_token(subscribe=["*"])
    reads_only = server.post_publish("reader", topic="user/42/orders", token=reader_token)
    assert reads_only.status_code == 403, reads_only.text
    assert server.post_publish("anonymous", topic="user/42/orders").status_code == 401
    assert server.post_publish("garbage", topic="user/42/orders", token="not.a.jwt").status_code == 401
    expired = make_token(publish=["*"], exp_in=-1)
    assert server.post_publish("expired", topic="user/42/orders", token=expired).status_code == 401
    # GET /broadcast takes the same credential.
    params = {"msg": "by broadcast", "topic": "user/42/b"}
    broadcast = server.http.get("/broadcast", params=params, headers=bearer(writer))
    assert broadcast.status_code == 200, broadcast.text
    last = broadcast.json()

    reader.find("the broadcast", lambda e: e.id == str(last["id"]))
    assert [e.data for e in reader.published()] == ["mine", "by broadcast"]


def test_the_publish_token_flag_still_works_beside_jwts(ssed_factory, readers):
    server = ssed_factory("--tick", "0", "--jwt-secret", SECRET, "--publish-token", "static-token")
    reader = readers(f"{server.base}/events", bearer(make_token(subscribe=["news"])))
    reader.find("connected", lambda e: e.event == "connected")
    sent = server.publish("static", topic="news", token="static-token")
    assert reader.find("the event", lambda e: e.id == str(sent["id"])).data == "static"
    # It is a publish credential, not a subscriber token.
    assert refused(server, "/events", bearer("static-token")).status_code == 401


def test_topics_counts_streams_and_needs_a_publish_credential(server, readers):
    user = make_token(subscribe=["news", "user/42/*"])
    readers(f"{server.base}/events?topic=news", bearer(user))
    readers(f"{server.base}/events?topic=news", bearer(user))
    readers(f"{server.base}/events?topic=user/42/*", bearer(user))
    readers(f"{server.base}/events?topic=news,user/42/a", bearer(user))
    readers(f"{server.base}/events", bearer(make_token(subscribe=["*"])))

    assert server.http.get("/topics").status_code == 401
    reader_only = server.http.get("/topics", headers=bearer(user))
    assert reader_only.status_code == 403, "a reader is no publisher"
    response = server.http.get("/topics", headers=bearer(make_token(publish=["anything"])))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    topics = response.json()["topics"]
    assert topics == [
        {"topic": "news", "subscribers": 3},
        {"topic": "*", "subscribers": 1},
        {"topic": "user/42/*", "subscribers": 1},
        {"topic": "user/42/a", "subscribers": 1},
    ]


def test_a_short_lived_token_gets_reauth_then_the_stream_ends_at_exp(server, readers, publisher):
    exp = int(time.time()) + 3  # under 30 s left: reauth at once
    token = make_token(subscribe=["news"], exp_in=None, exp=exp)
    reader = readers(f"{server.base}/events", bearer(token))
    reauth = reader.find("reauth", lambda e: e.event == "reauth")
    assert json.loads(reauth.data) == {"exp": exp}
    sent = server.publish("before exp", topic="news", token=publisher)
    reader.find("the event", lambda e: e.id == str(sent["id"]))
    assert reader.wait_end(), "the stream did not end at exp"
    assert reader.error is None, reader.error
    assert time.time() >= exp - 1


def test_trace_never_logs_a_token(ssed_factory, readers):
    server = ssed_factory("--tick", "0", "--trace", "--jwt-secret", SECRET)
    token = make_token(subscribe=["news"], publish=["news"])
    signature = token.split(".")[2]
    readers(f"{server.base}/events?topic=news&token={token}")
    readers(f"{server.base}/events?topic=news", {"Cookie": f"a=1; ssed_token={token}"})
    readers(f"{server.base}/events?topic=news", bearer(token))
    server.publish("traced", topic="news", token=token)
    refused(server, f"/events?topic=secret&token={token}")
    refused(server, f"/events?token={token}x")
    # The trace shows all six requests, each token replaced.
    wait_for("six tokens redacted", lambda: "".join(server.log).count("[redacted]") >= 6)
    assert signature not in "".join(server.log)
