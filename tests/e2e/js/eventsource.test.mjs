// The `eventsource` npm package (WHATWG-compatible EventSource for Node) as
// a client of ssed: named events, multi-line data, unicode, ids, and its own
// reconnection with Last-Event-ID after the stream is cut.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';

import { headerOf, recordEvents, startCutProxy, startSsed, waitFor } from '../lib/harness.mjs';

/**
 * Opens an EventSource and records every event of the given names, in order,
 * as {type, data, lastEventId}. Resolves once the stream is open.
 */
async function subscribe(url, names = []) {
  const es = new EventSource(url);
  const { events, errors, next } = await recordEvents(es, ['tick', ...names]);
  return { es, events, errors, next, close: () => es.close() };
}

describe('eventsource (npm)', () => {
  let ssed;
  before(async () => {
    ssed = await startSsed(['--tick', '0.2']);
  });
  after(() => ssed.stop());

  test('receives connected, ticks, unnamed and named events with their ids', async (t) => {
    const sub = await subscribe(`${ssed.base}/events`, ['headline']);
    t.after(() => sub.close());
    const connected = await sub.next('connected', (e) => e.type === 'connected');
    assert.match(connected.data, /^\{"client":\d+\}$/);
    const tick = await sub.next('a tick', (e) => e.type === 'tick');
    assert.match(tick.data, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(tick.lastEventId, '', 'ticks carry no id');

    const plain = await ssed.publish('plain', { topic: 'news' });
    const named = await ssed.publish('named', { topic: 'news', event: 'headline' });
    const gotPlain = await sub.next('the unnamed event', (e) => e.data === 'plain');
    assert.deepEqual(gotPlain, { type: 'message', data: 'plain', lastEventId: String(plain.id) });
    const gotNamed = await sub.next('the named event', (e) => e.data === 'named');
    assert.deepEqual(gotNamed, { type: 'headline', data: 'named', lastEventId: String(named.id) });
    assert.ok(named.id > plain.id, 'ids increase');
    // (A later tick has no id of its own. Browsers then report the last id
    // seen as its lastEventId, as WHATWG says; this package reports '' but
    // still remembers the id for Last-Event-ID, tested below.)
    assert.equal(sub.errors.length, 0);
  });

  test('reassembles multi-line data exactly; CRLF and CR arrive as LF', async (t) => {
    const sub = await subscribe(`${ssed.base}/events`);
    t.after(() => sub.close());
    const cases = [
      ['one\ntwo\nthree', 'one\ntwo\nthree'],
      ['crlf\r\nline', 'crlf\nline'],
      ['cr\rline', 'cr\nline'],
      ['mixed\r\n\r\nblank\rand\nall', 'mixed\n\nblank\nand\nall'],
      ['trailing newline\n', 'trailing newline\n'],
      ['\nleading newline', '\nleading newline'],
      [' leading space', ' leading space'],
      ['data: looks like a field\nid: 7\nevent: fake', 'data: looks like a field\nid: 7\nevent: fake'],
      [': a comment line?', ': a comment line?'],
      ['', ''],
    ];
    const ids = [];
    for (const [sent] of cases) ids.push((await ssed.publish(sent)).id);
    for (const [i, [sent, expected]] of cases.entries()) {
      const got = await sub.next(`event ${i} (${JSON.stringify(sent)})`, (e) => e.lastEventId === String(ids[i]));
      assert.equal(got.type, 'message');
      assert.equal(got.data, expected, `sent ${JSON.stringify(sent)}`);
    }
  });

  test('keeps unicode intact, also across many TCP reads', async (t) => {
    const sub = await subscribe(`${ssed.base}/events`);
    t.after(() => sub.close());
    const short = 'héllo wörld — 世界 🎉 e\u0301 \u200d👩‍💻 ∑ ﷽';
    // ~44 KB of multi-byte characters: the stream is read in pieces that split
    // characters; the client must put them back together.
    const long = '🎉🌍日本語ünïcödé\n'.repeat(1500);
    const a = await ssed.publish(short);
    const b = await ssed.publish(long);
    assert.equal((await sub.next('the short unicode event', (e) => e.lastEventId === String(a.id))).data, short);
    assert.equal((await sub.next('the long unicode event', (e) => e.lastEventId === String(b.id))).data, long);
  });

  test('topic filters: ?topic=a,b gets only those topics', async (t) => {
    const sub = await subscribe(`${ssed.base}/events?topic=alpha,beta`);
    t.after(() => sub.close());
    await ssed.publish('to alpha', { topic: 'alpha' });
    await ssed.publish('to gamma', { topic: 'gamma' });
    const last = await ssed.publish('to beta', { topic: 'beta' });
    await sub.next('the beta event', (e) => e.lastEventId === String(last.id));
    const data = sub.events.filter((e) => e.type === 'message').map((e) => e.data);
    assert.deepEqual(data, ['to alpha', 'to beta']);
    assert.equal(sub.events.filter((e) => e.type === 'tick').length, 0, 'tick is a topic too');
  });
});

describe('eventsource (npm): reconnecting', () => {
  test('reconnects by itself after the stream is cut and gets the missed events via Last-Event-ID', async (t) => {
    const ssed = await startSsed(['--tick', '0', '--retry', '200']);
    t.after(() => ssed.stop());
    const proxy = await startCutProxy(ssed.port);
    t.after(() => proxy.close());
    const sub = await subscribe(`${proxy.base}/events`, ['note']);
    t.after(() => sub.close());

    const first = await ssed.publish('before', { event: 'note' });
    await sub.next('the first event', (e) => e.lastEventId === String(first.id));

    proxy.cut();
    await waitFor('the client to notice', () => sub.errors.length > 0);
    const missed = [];
    for (const data of ['missed 1', 'missed 2\r\nsecond line', 'missed 3']) {
      missed.push({ ...(await ssed.publish(data, { event: 'note' })), data });
    }
    const [held] = await waitFor('the client to reconnect', () => {
      const held = proxy.held().filter((h) => h.text.includes('\r\n\r\n'));
      return held.length > 0 && held;
    });
    assert.match(held.text, /^GET \/events /);
    assert.equal(headerOf(held.text, 'Last-Event-ID'), String(first.id), `reconnect request:\n${held.text}`);
    proxy.resume();

    const lastId = String(missed.at(-1).id);
    await sub.next('the replayed events', (e) => e.lastEventId === lastId);
    const notes = sub.events.filter((e) => e.type === 'note');
    assert.deepEqual(
      notes.map((e) => [e.lastEventId, e.data]),
      [[String(first.id), 'before'], ...missed.map((m) => [String(m.id), m.data.replace('\r\n', '\n')])],
    );
    assert.equal(sub.events.filter((e) => e.type === 'gap').length, 0, 'full replay: no gap');
    assert.equal(sub.events.filter((e) => e.type === 'connected').length, 2, 'a second connected event');
  });

  test('a Last-Event-ID from before this process gets a gap event, then the stream', async (t) => {
    const ssed = await startSsed(['--tick', '0']);
    t.after(() => ssed.stop());
    const stale = '12345';
    const sub = await subscribe(`${ssed.base}/events?lastEventId=${stale}`);
    t.after(() => sub.close());
    const gap = await sub.next('the gap event', (e) => e.type === 'gap');
    const body = JSON.parse(gap.data);
    assert.equal(body.last_event_id, stale);
    assert.equal(body.oldest, null, 'nothing retained yet');
    const live = await ssed.publish('after the gap');
    await sub.next('the live event', (e) => e.lastEventId === String(live.id));
  });
});
