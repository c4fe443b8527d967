// Headless Chromium (Debian's /usr/bin/chromium) driving the demo page at /.
// The page uses the browser's own EventSource, so these tests check what a
// real browser makes of ssed's bytes: connecting, named events, ids,
// reconnecting by itself and replay through Last-Event-ID. Its wire view
// reads the same stream a second time with fetch() and shows the raw lines
// and the events its own parser builds from them. Over the bus, the page
// served by one process shows what was published on another.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { E2E_DIR, WAIT_MS, headerOf, startCutProxy, startSsed, waitFor } from '../lib/harness.mjs';
import { STREAM_ID, startBusPair, startRedis } from '../lib/bus.mjs';
import { startNginx } from '../lib/nginx.mjs';
import { JWT_ARGS, bearer, nowSecs, signToken } from '../lib/tokens.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.join(E2E_DIR, 'artifacts');

let context;
let userDataDir;

before(async () => {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssed-e2e-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 720 },
    timeout: WAIT_MS,
  });
  context.setDefaultTimeout(WAIT_MS);
});

after(async () => {
  if (context) await context.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

/** Texts of the .name/.id/.data spans of the row for event `name` with `id`. */
async function row(page, name, id) {
  const selector = id ? `#events li[data-event="${name}"][data-id="${id}"]` : `#events li[data-event="${name}"]`;
  const li = page.locator(selector).first();
  await li.waitFor({ state: 'attached' });
  return {
    name: await li.locator('.name').textContent(),
    id: await li.locator('.id').textContent(),
    data: await li.locator('.data').textContent(),
  };
}

async function waitForState(page, wanted) {
  await waitFor(`#state to read "${wanted}"`, async () => (await page.locator('#state').textContent()) === wanted);
}

describe('browser: the demo page', () => {
  let ssed;
  let page;

  before(async () => {
    ssed = await startSsed(['--tick', '0.2']);
    page = await context.newPage();
  });
  after(async () => {
    if (page) await page.close();
    if (ssed) await ssed.stop();
  });

  test('connects and shows ticks', async () => {
    await page.goto(`${ssed.base}/`);
    await waitForState(page, 'connected');
    const connected = await row(page, 'connected');
    assert.match(connected.data, /^\{"client":\d+\}$/);
    const tick = await row(page, 'tick');
    assert.equal(tick.name, 'tick');
    // Ticks carry no id, so the page shows a dash.
    assert.equal(tick.id, '—');
    assert.match(tick.data, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  });

  test('shows an event published from outside, with its id', async () => {
    const data = 'from outside: héllo 世界 🎉';
    const { id, subscribers } = await ssed.publish(data, { topic: 'news' });
    assert.ok(subscribers >= 1, `the page should be a subscriber, got ${subscribers}`);
    const shown = await row(page, 'message', String(id));
    assert.equal(shown.name, 'message');
    assert.equal(shown.id, String(id));
    assert.equal(shown.data, data);
  });

  test('its publish form works', async () => {
    await page.fill('#pub-topic', 'news');
    await page.fill('#pub-event', 'headline');
    await page.fill('#pub-data', 'line one\nline two');
    await page.click('#publish-button');
    const result = await waitFor('#publish-result to report the id', async () => {
      const text = await page.locator('#publish-result').textContent();
      return /published id \d+/.test(text) && text;
    });
    const id = /published id (\d+)/.exec(result)[1];
    assert.match(result, /to [1-9]\d* subscriber/);
    const shown = await row(page, 'headline', id);
    assert.deepEqual(shown, { name: 'headline', id, data: 'line one\nline two' });
    // The form told EventSource to listen for "headline": EventSource shows
    // it, and the wire view, which saw it too, does not show it again.
    assert.equal(await page.locator(`#events li[data-id="${id}"]`).count(), 1);
    assert.equal(await page.locator(`#events li[data-id="${id}"]`).getAttribute('data-via'), 'eventsource');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page.png'), fullPage: false });
  });
});

describe('browser: the wire view', () => {
  let ssed;
  let page;

  before(async () => {
    ssed = await startSsed(['--tick', '1']);
    page = await context.newPage();
    await page.goto(`${ssed.base}/`);
    await waitForState(page, 'connected');
    await page.locator('#wire li[data-type="connected"]').waitFor({ state: 'attached' });
  });
  after(async () => {
    if (page) await page.close();
    if (ssed) await ssed.stop();
  });

  test('a named, multi-line event published from outside: its raw lines, the event parsed from them, a row in the list', async () => {
    // As `curl -d ... '/publish?topic=news&event=headline'` would: this page
    // has no EventSource listener for "headline".
    const data = 'first line\nsecond line';
    const { id } = await ssed.publish(data, { topic: 'news', event: 'headline' });
    const block = page.locator(`#wire li[data-type="headline"][data-last-event-id="${id}"]`);
    await block.waitFor({ state: 'attached' });

    const lines = await block
      .locator('.raw .wl')
      .evaluateAll((els) => els.map((el) => ({ text: el.textContent, eol: el.dataset.eol, cls: el.className })));
    assert.deepEqual(
      lines.map((line) => line.text),
      [`id: ${id}`, 'event: headline', 'data: first line', 'data: second line', ''],
    );
    assert.deepEqual(
      lines.map((line) => line.cls),
      ['wl f-id', 'wl f-event', 'wl f-data', 'wl f-data', 'wl blank'],
      'each field highlighted, the blank line marked',
    );
    assert.deepEqual(
      lines.map((line) => line.eol),
      Array(5).fill('\\n'),
      'ssed ends its lines with LF',
    );

    // Beside the lines, the event as the parser built it.
    assert.equal(await block.locator('.ev-type').textContent(), 'headline');
    assert.equal(JSON.parse(await block.locator('.ev-data').textContent()), data);
    assert.equal(JSON.parse(await block.locator('.ev-id').textContent()), String(id));

    // And the list shows it, taken from the wire view.
    const shown = await row(page, 'headline', String(id));
    assert.deepEqual(shown, { name: 'headline', id: String(id), data });
    const li = page.locator(`#events li[data-event="headline"][data-id="${id}"]`);
    assert.equal(await li.getAttribute('data-via'), 'wire');
    assert.equal(await page.locator(`#events li[data-id="${id}"]`).count(), 1);
    // A tick after it has no id line: its row shows no id, not the headline's
    // (EventSource's lastEventId moved on to it without EventSource's list
    // seeing it; the page notes it).
    const newerTicks = (headlineId) =>
      page.evaluate((headlineId) => {
        const rows = [...document.querySelectorAll('#events li')];
        const at = rows.findIndex((li) => li.dataset.id === headlineId);
        return rows.slice(0, at).filter((li) => li.dataset.event === 'tick').map((li) => li.dataset.id || '');
      }, headlineId);
    const ticksAfter = await waitFor('a tick after the headline', async () => {
      const ids = await newerTicks(String(id));
      return ids.length > 0 && ids;
    });
    assert.deepEqual(ticksAfter, ticksAfter.map(() => ''));
    // The list also has what EventSource delivers: connected, ticks, message.
    await row(page, 'connected');
    await row(page, 'tick');
    const plain = await ssed.publish('plain', { topic: 'news' });
    assert.equal((await row(page, 'message', String(plain.id))).data, 'plain');
    assert.equal(await page.locator(`#events li[data-id="${plain.id}"]`).getAttribute('data-via'), 'eventsource');

    // The response head, behind a toggle.
    const head = page.locator('#wire-head-text');
    assert.equal(await head.isVisible(), false);
    await page.click('#wire-head summary');
    await head.waitFor({ state: 'visible' });
    const headText = await head.textContent();
    assert.match(headText, /^200 OK\n/);
    assert.match(headText, /^content-type: text\/event-stream$/m);
    assert.match(headText, /^cache-control: no-cache/m);

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page-wire.png'), fullPage: false });
  });

  test("its parser builds the same events as the browser's EventSource from the same bytes", async () => {
    // Every rule at once: CR LF, LF and CR line ends, no space or two spaces
    // after the colon, a field without a colon, a comment, an id with NUL
    // (ignored), an unknown field, an empty id, and an event left unfinished
    // at the end of the stream (never dispatched).
    const body = [
      'retry: 60000\r\n\r\n',
      ': a comment\r',
      'id: 1\r\nevent: one\r\ndata:no space\r\ndata:  two spaces\r\ndata\r\n\r\n',
      'id: bad\0id\ndata: after an id with NUL\nunknown: field\n\n',
      'event: two\rdata: CR only\r\r',
      'data: no type\ndata: last\n\n',
      'id\ndata: the id is now empty\n\n',
      'data: unfinished',
    ].join('');
    await page.route(`${ssed.base}/crafted`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/event-stream', body }),
    );
    const result = await page.evaluate(
      async ({ body, wait }) => {
        // The browser's EventSource: a listener for every type in the stream.
        const browser = await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('EventSource got too few events')), wait);
          const got = [];
          const es = new EventSource('/crafted');
          const take = (e) => {
            got.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
            if (got.length === 5) {
              clearTimeout(timer);
              es.close();
              resolve(got);
            }
          };
          for (const type of ['message', 'one', 'two']) es.addEventListener(type, take);
        });
        // The page's parser, fed one character at a time: every line is cut,
        // and so is every CR LF.
        const page = [];
        const parser = createParser((line, eol, what) => {
          if (what.event) page.push(what.event);
        });
        for (const ch of body) parser.feed(ch);
        return { browser, page, retry: parser.retry() };
      },
      { body, wait: WAIT_MS },
    );
    const expected = [
      { type: 'one', data: 'no space\n two spaces\n', lastEventId: '1' },
      { type: 'message', data: 'after an id with NUL', lastEventId: '1' },
      { type: 'two', data: 'CR only', lastEventId: '1' },
      { type: 'message', data: 'no type\nlast', lastEventId: '1' },
      { type: 'message', data: 'the id is now empty', lastEventId: '' },
    ];
    assert.deepEqual(result.browser, expected, "Chromium's EventSource");
    assert.deepEqual(result.page, expected, "the page's parser");
    assert.equal(result.retry, 60000);
  });
});

describe('browser: reconnecting', () => {
  test('after the stream is cut, EventSource comes back by itself and gets what it missed via Last-Event-ID', async (t) => {
    const ssed = await startSsed(['--tick', '0', '--retry', '200']);
    t.after(() => ssed.stop());
    const proxy = await startCutProxy(ssed.port);
    t.after(() => proxy.close());
    const page = await context.newPage();
    t.after(() => page.close());

    // The page's origin is the proxy, so its EventSource goes through it.
    await page.goto(`${proxy.base}/`);
    await waitForState(page, 'connected');
    const first = await ssed.publish('before the cut');
    await row(page, 'message', String(first.id));
    // The wire view (its own fetch connection) has seen it too.
    await page.locator(`#wire li[data-last-event-id="${first.id}"]`).waitFor({ state: 'attached' });

    proxy.cut();
    await waitForState(page, 'reconnecting');

    // Published while the page is away: the server keeps running.
    const missed = [];
    for (const data of ['missed one', 'missed two\nwith a second line', 'missed three']) {
      missed.push({ ...(await ssed.publish(data)), data });
    }

    // The browser's own reconnect, after `retry: 200`, carries the last id;
    // so does the wire view's, which does what EventSource does.
    const held = await waitFor('EventSource and the wire view to reconnect', () => {
      const held = proxy.held().filter((h) => h.text.includes('\r\n\r\n') && h.text.startsWith('GET /events'));
      return held.length === 2 && held;
    });
    for (const request of held) {
      assert.equal(headerOf(request.text, 'Last-Event-ID'), String(first.id), `reconnect request:\n${request.text}`);
    }
    proxy.resume();

    await waitForState(page, 'connected');
    for (const event of missed) {
      const shown = await row(page, 'message', String(event.id));
      assert.equal(shown.data, event.data);
    }
    // Replay was complete, so no gap, and nothing was shown twice.
    assert.equal(await page.locator('#events li[data-event="gap"]').count(), 0);
    // (Rows for `connected` also carry that id: EventSource's lastEventId
    // persists across events without an `id:` field, as the spec says.)
    assert.equal(await page.locator(`#events li[data-event="message"][data-id="${first.id}"]`).count(), 1);
    // And the live stream goes on after the replay.
    const live = await ssed.publish('live again');
    await row(page, 'message', String(live.id));
  });

  test('after a server restart on the same port, it reconnects and is told about the gap', async (t) => {
    let ssed = await startSsed(['--tick', '0', '--retry', '200']);
    const port = ssed.port;
    t.after(() => ssed.stop());
    const page = await context.newPage();
    t.after(() => page.close());

    await page.goto(`${ssed.base}/`);
    await waitForState(page, 'connected');
    const first = await ssed.publish('from the first process');
    await row(page, 'message', String(first.id));

    const status = await ssed.stop();
    assert.equal(status.code, 0, `graceful shutdown should exit 0, got ${JSON.stringify(status)}`);
    ssed = await startSsed(['--tick', '0', '--retry', '200'], { port });

    // The history lived in the old process: the new one cannot vouch for
    // what came after our id, so it says so with one `gap` event.
    const gap = await row(page, 'gap');
    const gapData = JSON.parse(gap.data);
    assert.equal(gapData.last_event_id, String(first.id));
    await waitForState(page, 'connected');
    const next = await ssed.publish('from the second process');
    assert.ok(next.id > first.id, `ids must keep increasing across restarts: ${first.id} then ${next.id}`);
    await row(page, 'message', String(next.id));
  });
});

describe('browser: over the bus (two processes, one Redis)', () => {
  test("A's page shows an event published on B with its stream id, in the list and the wire view", async (t) => {
    const redis = await startRedis({ persistence: 'none' });
    t.after(() => redis.stop());
    const { a, b } = await startBusPair(redis);
    t.after(() => a.stop());
    t.after(() => b.stop());
    const page = await context.newPage();
    t.after(() => page.close());

    await page.goto(`${a.base}/`);
    await waitForState(page, 'connected');
    await page.locator('#wire li[data-type="connected"]').waitFor({ state: 'attached' });
    await waitFor("the page's two streams on A", async () => (await a.stats()).subscribers === 2);

    const data = 'published on B: héllo';
    const { id, subscribers } = await b.publish(data, { topic: 'news' });
    assert.match(id, STREAM_ID);
    assert.equal(subscribers, 0, "`subscribers` counts B's own streams: none");

    // The list: EventSource gave it the stream id, an opaque string.
    assert.deepEqual(await row(page, 'message', id), { name: 'message', id, data });
    assert.equal(await page.locator(`#events li[data-id="${id}"]`).count(), 1);
    // The wire view: the raw lines, and the event parsed from them.
    const block = page.locator(`#wire li[data-type="message"][data-last-event-id="${id}"]`);
    await block.waitFor({ state: 'attached' });
    const lines = await block.locator('.raw .wl').allTextContents();
    assert.deepEqual(lines, [`id: ${id}`, `data: ${data}`, '']);
    assert.equal(JSON.parse(await block.locator('.ev-id').textContent()), id);
    assert.equal(JSON.parse(await block.locator('.ev-data').textContent()), data);

    // The page's publish form posts to A; the answer's id is the stream's,
    // and B reads the event too.
    await page.fill('#pub-topic', 'news');
    await page.fill('#pub-event', 'headline');
    await page.fill('#pub-data', 'from the form on A');
    await page.click('#publish-button');
    const result = await waitFor('#publish-result to report the id', async () => {
      const text = await page.locator('#publish-result').textContent();
      return /published id \d+-\d+/.test(text) && text;
    });
    const formId = /published id (\d+-\d+)/.exec(result)[1];
    assert.match(result, /to 2 subscriber/);
    assert.deepEqual(await row(page, 'headline', formId), { name: 'headline', id: formId, data: 'from the form on A' });
    await waitFor("B's tail to read the form's event", async () => (await b.stats()).bus.last_id === formId);
    await page.locator(`#wire li[data-last-event-id="${formId}"]`).waitFor({ state: 'attached' });

    await page.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page-bus.png'), fullPage: false });
  });
});

describe('browser: publish token and cross-origin use', () => {
  test('the publish form is refused without the token and accepted with it', async (t) => {
    const ssed = await startSsed(['--tick', '0', '--publish-token', 'form-secret']);
    t.after(() => ssed.stop());
    const page = await context.newPage();
    t.after(() => page.close());
    await page.goto(`${ssed.base}/`);
    await waitForState(page, 'connected');

    await page.fill('#pub-event', 'secured');
    await page.fill('#pub-data', 'needs a token');
    await page.click('#publish-button');
    await waitFor('the refusal', async () => /refused: 401/.test(await page.locator('#publish-result').textContent()));

    await page.fill('#pub-token', 'form-secret');
    await page.click('#publish-button');
    const result = await waitFor('the id', async () => {
      const text = await page.locator('#publish-result').textContent();
      return /published id \d+/.test(text) && text;
    });
    const id = /published id (\d+)/.exec(result)[1];
    const shown = await row(page, 'secured', id);
    assert.equal(shown.data, 'needs a token');
  });

  test('a page on another origin subscribes with EventSource and publishes with a Bearer token (CORS preflight)', async (t) => {
    const home = await startSsed(['--tick', '0']);
    t.after(() => home.stop());
    const other = await startSsed(['--tick', '0', '--publish-token', 'xo-secret']);
    t.after(() => other.stop());
    const page = await context.newPage();
    t.after(() => page.close());
    await page.goto(`${home.base}/`);

    const outcome = await page.evaluate(
      async ({ url, wait }) => {
        let published;
        const got = await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no cross-origin event')), wait);
          const es = new EventSource(`${url}/events?topic=xo`);
          es.addEventListener('note', (e) => {
            clearTimeout(timer);
            es.close();
            resolve({ data: e.data, lastEventId: e.lastEventId, origin: e.origin });
          });
          es.onopen = () => {
            published = (async () => {
              const refused = await fetch(`${url}/publish?topic=xo&event=note`, { method: 'POST', body: 'no token' });
              const accepted = await fetch(`${url}/publish?topic=xo&event=note`, {
                method: 'POST',
                headers: { Authorization: 'Bearer xo-secret', 'Content-Type': 'text/plain; charset=utf-8' },
                body: 'cross-origin ✓',
              });
              return [refused.status, accepted.status, await accepted.json()];
            })();
          };
        });
        return { got, statuses: await published };
      },
      { url: other.base, wait: WAIT_MS },
    );
    assert.deepEqual(outcome.statuses.slice(0, 2), [401, 200]);
    assert.equal(outcome.got.data, 'cross-origin ✓');
    assert.equal(outcome.got.lastEventId, String(outcome.statuses[2].id));
    assert.equal(outcome.got.origin, other.base);
  });
});

describe('browser: through nginx (deploy/nginx.conf)', () => {
  test('the demo page, its stream and its publish form work through the proxy', async (t) => {
    const ssed = await startSsed(['--tick', '0.2']);
    t.after(() => ssed.stop());
    const nginx = await startNginx(ssed.port);
    t.after(() => nginx.stop());
    const page = await context.newPage();
    t.after(() => page.close());

    const response = await page.goto(`${nginx.base}/`);
    assert.equal(response.status(), 200);
    await waitForState(page, 'connected');
    await row(page, 'tick');
    await page.fill('#pub-topic', 'proxied');
    await page.fill('#pub-event', 'via-nginx');
    await page.fill('#pub-data', 'through nginx ✓');
    await page.click('#publish-button');
    const result = await waitFor('#publish-result to report the id', async () => {
      const text = await page.locator('#publish-result').textContent();
      return /published id \d+/.test(text) && text;
    });
    const id = /published id (\d+)/.exec(result)[1];
    const shown = await row(page, 'via-nginx', id);
    assert.equal(shown.data, 'through nginx ✓');
  });
});

describe('browser: six connections per origin over HTTP/1.1', () => {
  test('a seventh EventSource waits for a free connection; one stream with several topics does not', async (t) => {
    const ssed = await startSsed(['--tick', '0']);
    t.after(() => ssed.stop());
    const page = await context.newPage();
    t.after(() => page.close());
    await page.goto(`${ssed.base}/healthz`); // same origin, no stream of its own

    await page.evaluate((n) => {
      window.sources = Array.from({ length: n }, (_, i) => new EventSource(`/events?topic=t${i}`));
    }, 7);
    await waitFor('six streams open', () =>
      page.evaluate(() => window.sources.filter((s) => s.readyState === EventSource.OPEN).length === 6),
    );
    const states = await page.evaluate(() => window.sources.map((s) => s.readyState));
    assert.equal(states.filter((s) => s === 0).length, 1, `one stream still connecting: ${states}`);
    assert.equal((await ssed.stats()).subscribers, 6, 'the server never saw the seventh request');

    // Closing one lets the seventh through.
    await page.evaluate(() => window.sources.find((s) => s.readyState === EventSource.OPEN).close());
    await waitFor('the seventh stream to open', () =>
      page.evaluate(() => window.sources.filter((s) => s.readyState === EventSource.OPEN).length === 6),
    );
    await page.evaluate(() => window.sources.forEach((s) => s.close()));

    // The way to live with it: one stream, several topics.
    await page.evaluate(async () => {
      window.gotMulti = [];
      const es = new EventSource('/events?topic=t1,t2,t3');
      es.onmessage = (e) => window.gotMulti.push(e.data);
      await new Promise((resolve) => {
        es.onopen = resolve;
      });
    });
    for (const topic of ['t1', 't2', 't3', 't4']) await ssed.publish(`to ${topic}`, { topic });
    await ssed.publish('to t3 again', { topic: 't3' });
    await waitFor('the multi-topic stream to get its events', () =>
      page.evaluate((n) => window.gotMulti.length >= n, 4),
    );
    assert.deepEqual(await page.evaluate(() => window.gotMulti), ['to t1', 'to t2', 'to t3', 'to t3 again']);
  });
});

describe('browser: a private stream with a token (ssed --jwt-secret)', () => {
  /** Ids of the rows for published events, in the order shown (oldest first). */
  const shownIds = (page) =>
    page.evaluate(() => {
      const rows = document.querySelectorAll('#events li[data-event="message"][data-id]');
      return [...rows].map((li) => li.dataset.id).reverse();
    });

  test('a token typed into the page opens a stream of its topics only, and the publish form uses it', async (t) => {
    const ssed = await startSsed(['--tick', '0.2', ...JWT_ARGS]);
    t.after(() => ssed.stop());
    const page = await context.newPage();
    t.after(() => page.close());
    const publisher = bearer(await signToken({ publish: ['*'] }));
    const token = await signToken({ subscribe: ['room/1/*'], publish: ['room/1/*'] });

    // Without a token the stream is refused, and EventSource gives up; so
    // does the wire view, which can say why.
    await page.goto(`${ssed.base}/`);
    await waitForState(page, 'closed');
    await waitFor('the wire view to show the 401', async () =>
      /^refused: 401/.test(await page.locator('#wire-state').textContent()),
    );

    await page.fill('#token', token);
    await page.click('#subscribe-button');
    await waitForState(page, 'connected');
    const shownUrl = await page.locator('#stream-url').textContent();
    assert.equal(shownUrl, 'GET /events?token=…', 'the page shows the request, never the token');

    const notMine = await ssed.publish('not mine', { topic: 'room/2/a', headers: publisher });
    const mine = await ssed.publish('mine', { topic: 'room/1/a', headers: publisher });
    assert.equal((await row(page, 'message', String(mine.id))).data, 'mine');
    // The wire view's fetch() sent the same ?token=, and never shows it.
    await page.locator(`#wire li[data-last-event-id="${mine.id}"]`).waitFor({ state: 'attached' });
    const notes = await page.locator('#wire li.conn').allTextContents();
    assert.ok(notes.some((note) => note.includes('GET /events?token=… → 200')), notes.join('\n'));
    assert.ok(!notes.some((note) => note.includes(token)), 'the wire view never shows the token');
    assert.equal(await page.locator(`#events li[data-id="${notMine.id}"]`).count(), 0);

    // The publish form sends the same token as a Bearer header.
    await page.fill('#pub-topic', 'room/1/b');
    await page.fill('#pub-data', 'from the form');
    await page.click('#publish-button');
    const result = await waitFor('the id', async () => {
      const text = await page.locator('#publish-result').textContent();
      return /published id \d+/.test(text) && text;
    });
    const id = /published id (\d+)/.exec(result)[1];
    assert.equal((await row(page, 'message', id)).data, 'from the form');
    await page.fill('#pub-topic', 'room/2/b');
    await page.click('#publish-button');
    await waitFor('the refusal', async () => /refused: 403/.test(await page.locator('#publish-result').textContent()));

    // Ticks run (--tick 0.2), but the token does not cover the topic `tick`.
    assert.deepEqual(await shownIds(page), [String(mine.id), id]);
    assert.equal(await page.locator('#events li[data-event="tick"]').count(), 0);
  });

  test('on reauth the page asks for a new token and reconnects with ?lastEventId=: every event exactly once', async (t) => {
    const ssed = await startSsed(['--tick', '0', ...JWT_ARGS]);
    t.after(() => ssed.stop());
    const page = await context.newPage();
    t.after(() => page.close());
    const publisher = bearer(await signToken({ publish: ['*'] }));
    // The server says `reauth` 30 s before exp: here about 3 s from now.
    const exp = nowSecs() + 33;
    const first = await signToken({ subscribe: ['room/1/*'], exp });

    await page.goto(`${ssed.base}/`);
    await page.fill('#token', first);
    await page.press('#token', 'Enter');
    await waitForState(page, 'connected');

    // A publisher that never stops: before the reauth, while the page asks
    // for a token, while it reconnects, and after.
    const published = [];
    let publishing = true;
    const publishOne = async (label) => {
      published.push((await ssed.publish(label, { topic: 'room/1/live', headers: publisher })).id);
      await ssed.publish('not for this page', { topic: 'room/2/live', headers: publisher });
    };
    const publisherDone = (async () => {
      for (let n = 0; publishing; n++) {
        await publishOne(`event ${n}`);
        await new Promise((resolve) => setTimeout(resolve, 40)); // pacing, not synchronisation
      }
    })().catch((err) => {
      if (publishing) throw err; // else the server was stopped under it
    });
    t.after(() => {
      publishing = false;
      return publisherDone;
    });

    // The reauth event: a row, and the token field asks for a new token.
    const reauth = await row(page, 'reauth');
    assert.deepEqual(JSON.parse(reauth.data), { exp });
    await waitFor('the token field to be highlighted', () => page.locator('#token.renew').count());
    assert.match(await page.locator('#token-hint').textContent(), /expires at .*new one/);
    assert.equal(await page.locator('#subscribe-button').textContent(), 'Reconnect');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page-reauth.png'), fullPage: false });
    const beforeRenewal = published.length;
    await waitFor('events shown while the page asks', async () => (await shownIds(page)).length > beforeRenewal + 2);

    // The reconnect: one more event is published while its request is on
    // its way, and the request carries the new token and the last id seen.
    let reconnect;
    let wireReconnect;
    await page.route(/\/events\?/, async (route) => {
      const url = new URL(route.request().url());
      // The wire view's fetch() asks for the same URL: note it, let it pass.
      if (route.request().resourceType() !== 'eventsource') {
        wireReconnect = url;
        return route.continue();
      }
      reconnect = { url, lastId: await page.evaluate(() => lastId) };
      await publishOne('while reconnecting');
      await route.continue();
    });
    const second = await signToken({ subscribe: ['room/1/*'] });
    await page.fill('#token', second);
    await page.press('#token', 'Enter');
    await waitFor('the reconnect requests', () => reconnect && wireReconnect);
    assert.equal(wireReconnect.search, reconnect.url.search, 'the wire view resumes the same way');
    assert.equal(reconnect.url.searchParams.get('token'), second);
    assert.equal(reconnect.url.searchParams.get('lastEventId'), reconnect.lastId);
    assert.ok(published.includes(Number(reconnect.lastId)), `lastEventId ${reconnect.lastId} is not one of ours`);
    await waitForState(page, 'connected');
    assert.equal(await page.locator('#token.renew').count(), 0, 'no longer highlighted');
    // The page closed the old streams: its EventSource and its wire view are left.
    await waitFor('the old streams to be gone', async () => (await ssed.stats()).subscribers === 2);

    const afterRenewal = published.length;
    await waitFor('events published after the reconnect', () => published.length > afterRenewal + 3);
    publishing = false;
    await publisherDone;
    const lastPublished = String(published.at(-1));
    await row(page, 'message', lastPublished);
    assert.deepEqual(await shownIds(page), published.map(String), 'every event, exactly once, in order');
    assert.equal(await page.locator('#events li[data-event="gap"]').count(), 0);
  });
});
