// The bus (`ssed --bus`) with a real redis-server and the `eventsource` npm
// package: two ssed processes sharing one port (--reuseport) and one Redis
// Stream. Every subscriber on either process gets every event, in one
// order, under the stream's ids (`<ms>-<seq>`, strings); the package's own
// reconnect, after the process it was on is killed, lands on the other one
// through the shared port and gets exactly what it missed; and while Redis
// is down (killed, then restarted from its append-only file) publishes are
// refused with 503 and Retry-After, streams stay open on their heartbeats,
// and nothing is lost or doubled afterwards. See lib/bus.mjs for the setup.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';

import { recordEvents, waitFor } from '../lib/harness.mjs';
import { STREAM_ID, compareIds, startBusPair, startRedis, waitHealth } from '../lib/bus.mjs';

/**
 * An EventSource recording every event of the given names (plus message,
 * connected and gap) as {type, data, lastEventId}, and every request its
 * own fetch made: {url, lastEventId, raw()} where raw() is the text of that
 * response so far (heartbeats included, which EventSource never shows).
 * While hold() is in force, a request is recorded but not sent until
 * release(): a test can publish before the reconnect reaches a server.
 */
async function subscribe(url, names = []) {
  const requests = [];
  let gate = null;
  let openGate = null;
  const recordingFetch = async (input, init) => {
    const request = { url: String(input), lastEventId: init?.headers?.['Last-Event-ID'] ?? null, text: '' };
    requests.push(request);
    if (gate) await gate;
    const response = await fetch(input, init);
    if (!response.body) return response;
    const [forClient, forTest] = response.body.tee();
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of forTest) request.text += decoder.decode(chunk, { stream: true });
    })().catch(() => {});
    const { status, statusText, headers } = response;
    return new Response(forClient, { status, statusText, headers });
  };
  const es = new EventSource(url, { fetch: recordingFetch });
  const { events, errors, next } = await recordEvents(es, names);
  return {
    es,
    events,
    errors,
    requests,
    /** Events that carry an id (published ones), as [id, type, data]. */
    published: () =>
      events.filter((e) => e.type !== 'connected' && e.type !== 'gap').map((e) => [e.lastEventId, e.type, e.data]),
    next,
    hold() {
      gate = new Promise((resolve) => {
        openGate = resolve;
      });
    },
    release() {
      gate = null;
      openGate?.();
    },
    close: () => es.close(),
  };
}

/** Publishes through `ssed`; checks the answer's id is a stream id (a JSON string). */
async function publish(ssed, data, options = {}) {
  const answer = await ssed.publish(data, options);
  assert.equal(typeof answer.id, 'string', `a bus id is a JSON string: ${JSON.stringify(answer)}`);
  assert.match(answer.id, STREAM_ID);
  return { id: answer.id, type: options.event ?? 'message', data: data.replaceAll('\r\n', '\n') };
}

/** Redis, two processes on it, stopped when the test ends (even on failure). */
async function busPair(t, { persistence = 'aof', args = [] } = {}) {
  const redis = await startRedis({ persistence });
  t.after(() => redis.stop());
  const pair = await startBusPair(redis, { args });
  t.after(() => pair.a.stop());
  t.after(() => pair.b.stop());
  return { redis, ...pair };
}

const expected = (published) => published.map((p) => [p.id, p.type, p.data]);

describe('eventsource (npm) over the bus: two processes, one Redis', () => {
  test('subscribers on either process get the events published to either, same ids, same order', async (t) => {
    const { a, b, sharedBase } = await busPair(t, { persistence: 'none' });
    const subs = {
      a: await subscribe(`${a.base}/events`, ['note']),
      b: await subscribe(`${b.base}/events`, ['note']),
      shared: await subscribe(`${sharedBase}/events`, ['note']),
    };
    t.after(() => Object.values(subs).forEach((s) => s.close()));
    const streams = async () => (await a.stats()).subscribers + (await b.stats()).subscribers;
    await waitFor('three streams open', async () => (await streams()) === 3);

    const published = [];
    for (let i = 0; i < 8; i += 1) {
      const via = i % 2 === 0 ? a : b;
      const options = i % 3 === 0 ? { topic: 'news', event: 'note' } : { topic: i % 2 ? 'sport' : 'news' };
      const data = `event ${i} via ${via === a ? 'A' : 'B'}${i === 5 ? '\r\nsecond line' : ''}`;
      published.push(await publish(via, data, options));
    }
    for (let i = 1; i < published.length; i += 1) {
      const [older, newer] = [published[i - 1].id, published[i].id];
      assert.ok(compareIds(older, newer) < 0, `ids increase: ${older}, ${newer}`);
    }
    const last = published.at(-1).id;
    for (const [name, sub] of Object.entries(subs)) {
      await sub.next(`the last event on ${name}`, (e) => e.lastEventId === last);
      assert.deepEqual(sub.published(), expected(published), `what the subscriber on ${name} got`);
      assert.equal(sub.events.filter((e) => e.type === 'gap').length, 0);
      assert.equal(sub.errors.length, 0);
    }
  });

  test("a process killed under its stream: EventSource comes back through the shared port to the other, missing nothing", async (t) => {
    const { a, b, sharedBase } = await busPair(t, { args: ['--retry', '200'] });
    const sub = await subscribe(`${sharedBase}/events`, ['note']);
    t.after(() => sub.close());
    // The kernel chose one of the two for it.
    const [victim, survivor] = await waitFor('the stream to land on A or B', async () => {
      const [onA, onB] = [(await a.stats()).subscribers, (await b.stats()).subscribers];
      if (onA + onB !== 1) return null;
      return onA === 1 ? [a, b] : [b, a];
    });

    const before = [
      await publish(victim, 'before, via the victim'),
      await publish(survivor, 'before, via the survivor', { event: 'note' }),
    ];
    await sub.next('the events before the kill', (e) => e.lastEventId === before[1].id);

    // The reconnect request is recorded but held until the missed events
    // are published, so they must come through the replay.
    sub.hold();
    await victim.kill();
    await waitFor('EventSource to notice the stream ended', () => sub.errors.length > 0);
    const missed = [];
    for (const data of ['missed 1', 'missed 2\r\nwith a second line', 'missed 3']) {
      missed.push(await publish(survivor, data, { event: 'note', topic: 'news' }));
    }
    await waitFor('EventSource to reconnect by itself', () => sub.requests.length === 2);
    assert.equal(sub.requests[1].url, `${sharedBase}/events`, 'the same URL: the shared port');
    assert.equal(sub.requests[1].lastEventId, before[1].id, 'Last-Event-ID is the last id seen');
    sub.release();

    await sub.next('the missed events', (e) => e.lastEventId === missed.at(-1).id);
    assert.equal((await survivor.stats()).subscribers, 1, 'the stream is on the survivor now');
    const live = await publish(survivor, 'live again');
    await sub.next('the live event', (e) => e.lastEventId === live.id);

    assert.deepEqual(sub.published(), expected([...before, ...missed, live]), 'every event exactly once, in order');
    assert.equal(sub.events.filter((e) => e.type === 'gap').length, 0, 'no gap');
    assert.equal(sub.events.filter((e) => e.type === 'connected').length, 2, 'connected twice: one reconnect');
    assert.match(sub.requests[1].text, /^retry: 200\n/, 'the survivor answered the reconnect');
  });

  test('Redis killed, restarted from its AOF: 503 with Retry-After meanwhile, the stream stays open, no duplicate', async (t) => {
    const { redis, a, b } = await busPair(t, { persistence: 'aof' });
    const sub = await subscribe(`${a.base}/events`, ['note']);
    t.after(() => sub.close());
    const before = [await publish(a, 'before, via A'), await publish(b, 'before, via B', { event: 'note' })];
    await sub.next('the events before the outage', (e) => e.lastEventId === before[1].id);

    await redis.kill();
    await waitHealth(a, 503);
    await waitHealth(b, 503);
    assert.match((await a.health()).text, /bus down/);
    for (const via of [a, b]) {
      const refused = await via.postPublish('during the outage', { topic: 'news' });
      assert.equal(refused.status, 503, refused.text);
      assert.match(refused.retryAfter ?? '', /^[1-9]\d*$/, `Retry-After: ${refused.retryAfter}`);
      assert.match(refused.text, /bus down/);
    }
    // The stream is still open, and heartbeats keep coming on it.
    const pings = () => sub.requests[0].text.split('\n').filter((line) => line === ': ping').length;
    const pingsAtKill = pings();
    await waitFor('two heartbeats while Redis is down', () => pings() >= pingsAtKill + 2);
    assert.equal(sub.es.readyState, EventSource.OPEN);
    assert.equal(sub.errors.length, 0, 'the stream never broke');
    assert.equal((await a.stats()).subscribers, 1);

    await redis.restart();
    await waitHealth(a, 200);
    await waitHealth(b, 200);
    const after = [await publish(b, 'after, via B', { event: 'note' }), await publish(a, 'after, via A')];
    assert.ok(compareIds(before[1].id, after[0].id) < 0, `ids go on increasing: ${before[1].id}, ${after[0].id}`);
    await sub.next('the events after the restart', (e) => e.lastEventId === after[1].id);

    assert.deepEqual(sub.published(), expected([...before, ...after]), 'nothing lost, nothing twice');
    assert.equal(sub.events.filter((e) => e.type === 'gap').length, 0, 'with the AOF nothing was lost: no gap');
    assert.equal(sub.requests.length, 1, 'one connection all along');
    assert.equal(sub.errors.length, 0);
  });
});
