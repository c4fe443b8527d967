// Subscriber tokens with the `eventsource` npm package against
// `ssed --jwt-secret`; tokens signed by `jose` (lib/tokens.mjs).
//
// Unlike a browser's EventSource, this package can send a header: since
// v3 it takes a `fetch` option, a function that makes each request, and
// that function adds `Authorization: Bearer <token>`. Because it runs for
// every request, reconnects included, it can also pick up a renewed token.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';

import { startSsed, waitFor } from '../lib/harness.mjs';
import { JWT_ARGS, bearer, nowSecs, signToken } from '../lib/tokens.mjs';

/**
 * An EventSource whose every request carries `Authorization: Bearer` with
 * whatever `auth.token` is at that moment. Records the events of `names`
 * and, for each request, the token and Last-Event-ID it was sent with.
 */
function open(url, auth, names = []) {
  const events = [];
  const errors = [];
  const requests = [];
  const es = new EventSource(url, {
    fetch: async (input, init) => {
      const headers = { ...init.headers };
      if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
      requests.push({ token: auth.token, lastEventId: headers['Last-Event-ID'] ?? null });
      if (auth.beforeRequest) await auth.beforeRequest(requests.length);
      return fetch(input, { ...init, headers });
    },
  });
  for (const name of ['message', 'connected', 'tick', 'gap', 'reauth', ...names]) {
    es.addEventListener(name, (e) => events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId }));
  }
  es.addEventListener('error', (e) => errors.push({ code: e.code, message: e.message }));
  return {
    es,
    events,
    errors,
    requests,
    next: (what, pred) => waitFor(what, () => events.find(pred)),
    messages: () => events.filter((e) => e.type === 'message').map((e) => e.data),
    close: () => es.close(),
  };
}

describe('eventsource (npm) with subscriber tokens', () => {
  test('the token goes in a header; the stream gets only the topics it covers', async (t) => {
    const ssed = await startSsed(['--tick', '0', ...JWT_ARGS]);
    t.after(() => ssed.stop());
    const publisher = bearer(await signToken({ publish: ['*'] }));
    const sub = open(`${ssed.base}/events`, { token: await signToken({ subscribe: ['news', 'room/1/*'] }) });
    t.after(() => sub.close());
    await sub.next('connected', (e) => e.type === 'connected');

    for (const topic of ['room/2/a', 'room/1/a', 'newsletter', 'news', 'room/1', 'room/1/a/b', 'secret']) {
      await ssed.publish(topic, { topic, headers: publisher });
    }
    const last = await ssed.publish('last', { topic: 'news', headers: publisher });
    await sub.next('the last event', (e) => e.lastEventId === String(last.id));
    assert.deepEqual(sub.messages(), ['room/1/a', 'news', 'room/1/a/b', 'last']);
    assert.equal(sub.errors.length, 0);
  });

  test('no token, or topics beyond it: the error carries 401 or 403 and the client gives up', async (t) => {
    const ssed = await startSsed(['--tick', '0', ...JWT_ARGS]);
    t.after(() => ssed.stop());
    const token = await signToken({ subscribe: ['news'] });
    const cases = [
      [`${ssed.base}/events`, {}, 401],
      [`${ssed.base}/events`, { token: `${token}x` }, 401],
      [`${ssed.base}/events?topic=secret`, { token }, 403],
      [`${ssed.base}/events?topic=*`, { token }, 403],
    ];
    for (const [url, auth, status] of cases) {
      const sub = open(url, auth);
      t.after(() => sub.close());
      await waitFor(`an error for ${url}`, () => sub.errors.length > 0);
      assert.equal(sub.errors[0].code, status, JSON.stringify(sub.errors[0]));
      // A non-200 answer is final for an EventSource: it does not retry.
      assert.equal(sub.es.readyState, EventSource.CLOSED);
    }
  });

  test('a short-lived token gets reauth; with a fresh token, the reconnect at exp misses nothing', async (t) => {
    const ssed = await startSsed(['--tick', '0', '--retry', '200', ...JWT_ARGS]);
    t.after(() => ssed.stop());
    const publisher = bearer(await signToken({ publish: ['*'] }));
    // Less than 30 s left: reauth comes at once, and the stream ends at exp.
    const exp = nowSecs() + 2;
    const auth = { token: await signToken({ subscribe: ['news'], exp }) };
    const short = auth.token;
    const fresh = await signToken({ subscribe: ['news'] });
    let whileAway;
    // The reconnect's request: publish first, so one event surely happens
    // while the client is away.
    auth.beforeRequest = async (n) => {
      if (n === 2) whileAway = await ssed.publish('while away', { topic: 'news', headers: publisher });
    };
    const sub = open(`${ssed.base}/events`, auth);
    t.after(() => sub.close());

    const reauth = await sub.next('reauth', (e) => e.type === 'reauth');
    assert.deepEqual(JSON.parse(reauth.data), { exp });
    auth.token = fresh; // what an app does on reauth: fetch a new token
    const before = await ssed.publish('before exp', { topic: 'news', headers: publisher });
    await sub.next('the event before exp', (e) => e.lastEventId === String(before.id));

    // At exp the server ends the stream; the package reconnects by itself
    // after `retry:`, with the fresh token and the last id it saw.
    const connects = () => sub.events.filter((e) => e.type === 'connected').length;
    await waitFor('a second connected event', () => connects() === 2, { timeoutMs: 10_000 });
    assert.ok(nowSecs() >= exp - 1, 'the stream ended before exp');
    assert.deepEqual(
      sub.requests.map((r) => r.token),
      [short, fresh],
      'the reconnect carries the fresh token',
    );
    assert.equal(sub.requests[1].lastEventId, String(before.id));
    const after = await ssed.publish('after', { topic: 'news', headers: publisher });
    await sub.next('the event after', (e) => e.lastEventId === String(after.id));
    assert.deepEqual(sub.messages(), ['before exp', 'while away', 'after']);
    assert.ok(whileAway.id > before.id);
    assert.equal(sub.events.filter((e) => e.type === 'gap').length, 0);
  });
});
