// curl, run exactly as the README shows it, through a shell: `curl -N` to
// subscribe and `curl -X POST ... --data-binary` to publish. Checks the bytes
// a person sees in their terminal.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { WAIT_MS, startSsed, waitFor } from '../lib/harness.mjs';

const exec = promisify(execFile);

/** Runs a shell command line (as typed in a terminal) to completion. */
async function sh(command) {
  const { stdout } = await exec('sh', ['-c', command], { timeout: WAIT_MS });
  return stdout;
}

/** Starts a long-running shell command line; collects its stdout. */
function shStream(command) {
  const child = spawn('sh', ['-c', `exec ${command}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    out += chunk;
  });
  child.stderr.on('data', (chunk) => {
    err += chunk;
  });
  // 'close', not 'exit': 'exit' may come before the last of curl's output
  // has been read from its stdout (and curl writes the stream's last bytes
  // just before it exits).
  const exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  return {
    out: () => out,
    err: () => err,
    exited,
    wait: (what, pred) => waitFor(what, () => pred(out)),
    stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

describe('curl', () => {
  let ssed;
  before(async () => {
    ssed = await startSsed(['--tick', '0']);
  });
  after(() => ssed.stop());

  test('curl -N /events and curl -X POST --data-binary, as in the README', async (t) => {
    const stream = shStream(`curl -N http://127.0.0.1:${ssed.port}/events`);
    t.after(() => stream.stop());
    await stream.wait('the connected event', (out) => out.includes('event: connected\n'));
    assert.match(stream.out(), /^retry: 3000\n\nevent: connected\ndata: \{"client":\d+\}\n\n$/);

    const answer = await sh(
      `curl -X POST 'http://127.0.0.1:${ssed.port}/publish?topic=news&event=headline' --data-binary 'hello'`,
    );
    const { id, subscribers } = JSON.parse(answer);
    assert.ok(Number.isSafeInteger(id) && id > 0, answer);
    assert.equal(subscribers, 1);
    const expected = `id: ${id}\nevent: headline\ndata: hello\n\n`;
    await stream.wait('the published event', (out) => out.includes(expected));
    assert.ok(stream.out().endsWith(expected), JSON.stringify(stream.out()));
  });

  test('multi-line data from a file with --data-binary @file', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssed-e2e-curl-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'body.txt');
    fs.writeFileSync(file, 'first line\r\nsecond line\rthird — ✓\n');
    const stream = shStream(`curl -N 'http://127.0.0.1:${ssed.port}/events?topic=files'`);
    t.after(() => stream.stop());
    await stream.wait('the connected event', (out) => out.includes('event: connected\n'));
    const { id } = JSON.parse(
      await sh(`curl -X POST 'http://127.0.0.1:${ssed.port}/publish?topic=files' --data-binary @${file}`),
    );
    const expected = `id: ${id}\ndata: first line\ndata: second line\ndata: third — ✓\ndata: \n\n`;
    await stream.wait('the published event', (out) => out.includes(expected));
  });

  test('curl -N -H "Last-Event-ID: n" replays what came after n', async (t) => {
    const a = await ssed.publish('a', { topic: 'replay' });
    const b = await ssed.publish('b', { topic: 'replay' });
    const c = await ssed.publish('c', { topic: 'replay' });
    const stream = shStream(`curl -N -H 'Last-Event-ID: ${a.id}' 'http://127.0.0.1:${ssed.port}/events?topic=replay'`);
    t.after(() => stream.stop());
    const expected = `id: ${b.id}\ndata: b\n\nid: ${c.id}\ndata: c\n\n`;
    await stream.wait('the replay', (out) => out.includes(expected));
    assert.ok(!stream.out().includes('event: gap'), stream.out());
    assert.ok(!stream.out().includes(`id: ${a.id}\n`), stream.out());
  });

  test('curl -i shows the stream headers', async (t) => {
    const stream = shStream(`curl -N -i http://127.0.0.1:${ssed.port}/events`);
    t.after(() => stream.stop());
    const out = await stream.wait('the head and the connected event', (text) =>
      text.includes('event: connected\n') ? text : null,
    );
    const head = out.slice(0, out.indexOf('\r\n\r\n'));
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /^content-type: text\/event-stream\r?$/im);
    assert.match(head, /^cache-control: no-cache, no-transform\r?$/im);
    assert.match(head, /^x-accel-buffering: no\r?$/im);
    assert.match(head, /^access-control-allow-origin: \*\r?$/im);
    assert.match(head, /^transfer-encoding: chunked\r?$/im);
    assert.doesNotMatch(head, /^content-length:/im);
    assert.doesNotMatch(head, /^connection: keep-alive/im);
  });

  test('an HTTP/1.0 client (curl -0) gets an unframed stream', async (t) => {
    const stream = shStream(`curl -0 -N -i http://127.0.0.1:${ssed.port}/events`);
    t.after(() => stream.stop());
    await stream.wait('the connected event', (out) => out.includes('event: connected\n'));
    const { id } = await ssed.publish('over 1.0');
    const out = await stream.wait('the event', (text) => text.includes(`id: ${id}\ndata: over 1.0\n\n`) && text);
    assert.doesNotMatch(out, /^transfer-encoding:/im);
  });

  test('curl on /healthz, /stats and /broadcast', async () => {
    assert.equal((await sh(`curl -s http://127.0.0.1:${ssed.port}/healthz`)).trim(), 'ok');
    const stats = JSON.parse(await sh(`curl -s http://127.0.0.1:${ssed.port}/stats`));
    for (const key of ['connections', 'subscribers', 'published', 'delivered', 'bytes_out', 'evicted', 'uptime_s', 'history']) {
      assert.ok(key in stats, `/stats lacks ${key}: ${JSON.stringify(stats)}`);
    }
    const answer = JSON.parse(await sh(`curl -s 'http://127.0.0.1:${ssed.port}/broadcast?msg=hi%20there'`));
    assert.ok(answer.id > 0);
  });
});

test('SIGTERM: curl -N sees a spread-out retry: and the stream end, and ssed exits 0', async (t) => {
  const ssed = await startSsed(['--tick', '0', '--retry', '200']);
  t.after(() => ssed.stop());
  const streams = [0, 1, 2].map(() => shStream(`curl -sN http://127.0.0.1:${ssed.port}/events`));
  t.after(() => Promise.all(streams.map((s) => s.stop())));
  for (const stream of streams) await stream.wait('connected', (out) => out.includes('event: connected\n'));
  const status = await ssed.stop();
  assert.deepEqual(status, { code: 0, signal: null });
  for (const stream of streams) {
    const code = await stream.exited;
    assert.equal(code, 0, `curl should see a clean end of stream: ${stream.err()}`);
    const match = /\n\nretry: (\d+)\n\n$/.exec(stream.out());
    assert.ok(match, `the stream should end with a retry: line: ${JSON.stringify(stream.out())}`);
    const retry = Number(match[1]);
    assert.ok(retry >= 200 && retry <= 200 + 5 * 200, `shutdown retry ${retry} outside [200, 1200]`);
  }
});
