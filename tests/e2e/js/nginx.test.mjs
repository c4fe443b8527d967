// nginx as a reverse proxy in front of ssed, configured with the shipped
// deploy/nginx.conf (only its `listen` line and upstream address rewritten
// to loopback test ports). The shipped file does not turn proxy buffering
// off: events must still arrive at once, because ssed sends
// `X-Accel-Buffering: no`. Measures and prints publish-to-receive latency.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { EventSource } from 'eventsource';

import { E2E_DIR, WAIT_MS, startSsed, waitFor, withTimeout } from '../lib/harness.mjs';
import { SHIPPED, startNginx } from '../lib/nginx.mjs';

const ARTIFACTS = path.join(E2E_DIR, 'artifacts');
const LATENCY_EVENTS = 20;

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Publishes `count` events one at a time through `base`, each timed until `es` delivers it. */
async function measureLatency(base, es, count) {
  const arrived = new Map();
  es.addEventListener('latency', (e) => arrived.set(e.data, performance.now()));
  const samples = [];
  for (let i = 0; i < count; i += 1) {
    const data = `probe ${i}`;
    const start = performance.now();
    const response = await fetch(`${base}/publish?topic=latency&event=latency`, { method: 'POST', body: data });
    assert.equal(response.status, 200, await response.text());
    await waitFor(`event "${data}" through nginx`, () => arrived.has(data), { intervalMs: 1, timeoutMs: 5000 });
    samples.push(arrived.get(data) - start);
  }
  return samples;
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    min: sorted[0],
    median: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    max: sorted.at(-1),
  };
}

const fmt = (ms) => `${ms.toFixed(2)} ms`;

describe('nginx in front of ssed (deploy/nginx.conf)', () => {
  let ssed;
  let nginx;

  before(async () => {
    ssed = await startSsed(['--tick', '0', '--retry', '200']);
    nginx = await startNginx(ssed.port);
  });
  after(async () => {
    if (nginx) await nginx.stop();
    if (ssed) await ssed.stop();
  });

  test('the shipped config does not turn proxy buffering off', () => {
    const shipped = fs.readFileSync(SHIPPED, 'utf8').replace(/#.*$/gm, '');
    assert.doesNotMatch(shipped, /proxy_buffering\s+off/);
    assert.doesNotMatch(shipped, /proxy_ignore_headers[^;]*X-Accel-Buffering/i);
  });

  test('the stream comes through with its head, and X-Accel-Buffering is consumed by nginx', async () => {
    const controller = new AbortController();
    const response = await fetch(`${nginx.base}/events`, { signal: controller.signal });
    try {
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'text/event-stream');
      assert.equal(response.headers.get('cache-control'), 'no-cache, no-transform');
      assert.equal(response.headers.get('x-accel-buffering'), null, 'nginx keeps X-Accel-* to itself');
      assert.equal(response.headers.get('content-length'), null);
      const reader = response.body.getReader();
      let text = '';
      const decoder = new TextDecoder();
      await withTimeout(
        (async () => {
          while (!text.includes('event: connected\n')) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`stream ended: ${JSON.stringify(text)}`);
            text += decoder.decode(value, { stream: true });
          }
        })(),
        WAIT_MS,
        'the connected event through nginx',
      );
      assert.match(text, /^retry: 200\n\nevent: connected\ndata: \{"client":\d+\}\n\n/);
    } finally {
      controller.abort();
    }
  });

  test(`publish-to-receive latency through nginx over ${LATENCY_EVENTS} events`, async (t) => {
    const es = new EventSource(`${nginx.base}/events?topic=latency`);
    t.after(() => es.close());
    await waitFor('EventSource through nginx to open', () => es.readyState === EventSource.OPEN);
    // Warm up the keep-alive connections (client -> nginx -> ssed) first.
    await measureLatency(nginx.base, es, 2);
    const samples = await measureLatency(nginx.base, es, LATENCY_EVENTS);
    const s = summary(samples);
    const line =
      `nginx latency (publish via nginx -> receive via nginx, ${s.n} events): ` +
      `median ${fmt(s.median)}, p90 ${fmt(s.p90)}, max ${fmt(s.max)}, min ${fmt(s.min)}`;
    t.diagnostic(line);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'nginx-latency.txt'), `${line}\n`);
    // Buffered, an event this small would sit in nginx until the buffer
    // filled or the stream ended; unbuffered it is a loopback round trip.
    assert.ok(s.median < 100, `median ${fmt(s.median)} is too slow for unbuffered proxying`);
    assert.ok(s.max < 1000, `max ${fmt(s.max)} is too slow for unbuffered proxying`);
  });

  test('Last-Event-ID passes through nginx and the replay arrives', async (t) => {
    const a = await ssed.publish('one', { topic: 'via-nginx' });
    const b = await ssed.publish('two', { topic: 'via-nginx' });
    const got = [];
    const es = new EventSource(`${nginx.base}/events?topic=via-nginx`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, 'Last-Event-ID': String(a.id) } }),
    });
    t.after(() => es.close());
    es.addEventListener('message', (e) => got.push([e.lastEventId, e.data]));
    es.addEventListener('gap', (e) => got.push(['gap', e.data]));
    await waitFor('the replayed event', () => got.length >= 1);
    assert.deepEqual(got, [[String(b.id), 'two']]);
  });

  test('publishing through nginx works, and its answer is JSON', async () => {
    const response = await fetch(`${nginx.base}/publish?topic=x&event=y`, { method: 'POST', body: 'z' });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.ok(body.id > 0 && typeof body.subscribers === 'number', JSON.stringify(body));
  });
});

describe('nginx: quiet streams and bursts', () => {
  let ssed;
  let nginx;
  before(async () => {
    ssed = await startSsed(['--tick', '0', '--heartbeat', '0.3']);
    nginx = await startNginx(ssed.port);
  });
  after(async () => {
    if (nginx) await nginx.stop();
    if (ssed) await ssed.stop();
  });

  test('the heartbeat comment reaches the client through nginx', async () => {
    const controller = new AbortController();
    const response = await fetch(`${nginx.base}/events`, { signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    try {
      await withTimeout(
        (async () => {
          while (!text.includes('\n: ping\n')) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`stream ended: ${JSON.stringify(text)}`);
            text += decoder.decode(value, { stream: true });
          }
        })(),
        WAIT_MS,
        'a heartbeat through nginx',
      );
    } finally {
      controller.abort();
    }
  });

  test('a burst of 500 concurrent publishes all arrive, once each, in id order', async (t) => {
    const es = new EventSource(`${nginx.base}/events?topic=burst`);
    t.after(() => es.close());
    const got = [];
    es.addEventListener('message', (e) => got.push([Number(e.lastEventId), e.data]));
    await waitFor('subscribed', async () => (await ssed.stats()).subscribers >= 1);
    const answers = [];
    for (let batch = 0; batch < 10; batch += 1) {
      answers.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, (_, i) => ssed.publish(`burst ${batch * 50 + i}`, { topic: 'burst' })),
        )),
      );
    }
    await waitFor('all 500 events', () => got.length >= 500);
    const ids = got.map(([id]) => id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in id order');
    assert.equal(new Set(ids).size, 500, 'no duplicates');
    assert.deepEqual(new Set(ids), new Set(answers.map((a) => a.id)), 'exactly the published ids');
  });
});
