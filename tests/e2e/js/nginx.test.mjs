// nginx as a reverse proxy in front of ssed, configured with the shipped
// deploy/nginx.conf (only its `listen` line and upstream address rewritten
// to loopback test ports). The shipped file does not turn proxy buffering
// off: events must still arrive at once, because ssed sends
// `X-Accel-Buffering: no`. Measures and prints publish-to-receive latency.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { EventSource } from 'eventsource';

import { E2E_DIR, REPO_DIR, WAIT_MS, startSsed, waitFor, withTimeout } from '../lib/harness.mjs';

const exec = promisify(execFile);
const NGINX = process.env.NGINX_PATH || '/usr/sbin/nginx';
const SHIPPED = path.join(REPO_DIR, 'deploy', 'nginx.conf');
const ARTIFACTS = path.join(E2E_DIR, 'artifacts');
const LATENCY_EVENTS = 20;

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The shipped site config with only `listen` and the upstream address changed. */
function siteConfig(shipped, listenPort, upstreamPort, extra = '') {
  let listens = 0;
  let upstreams = 0;
  let text = shipped.replace(/^(\s*)listen\s+80;/m, (_, indent) => {
    listens += 1;
    return `${indent}listen 127.0.0.1:${listenPort};`;
  });
  text = text.replace(/^(\s*)server\s+127\.0\.0\.1:8080;/m, (_, indent) => {
    upstreams += 1;
    return `${indent}server 127.0.0.1:${upstreamPort};`;
  });
  assert.equal(listens, 1, 'deploy/nginx.conf should have one `listen 80;` line');
  assert.equal(upstreams, 1, 'deploy/nginx.conf should have one `server 127.0.0.1:8080;` upstream line');
  if (extra) text = text.replace(/^(\s*)location = \/events \{/m, `$1location = /events {\n$1    ${extra}`);
  return text;
}

/** Runs nginx in the foreground from a temporary prefix; resolves once it answers. */
async function startNginx(upstreamPort, { extra = '' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssed-e2e-nginx-'));
  const shipped = fs.readFileSync(SHIPPED, 'utf8');
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'ssed.conf'), siteConfig(shipped, port, upstreamPort, extra));
    const asRoot = process.getuid && process.getuid() === 0;
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      [
        'daemon off;',
        'master_process on;',
        'worker_processes 1;',
        asRoot ? 'user root root;' : '',
        `pid ${dir}/nginx.pid;`,
        `error_log ${dir}/error.log info;`,
        'events { worker_connections 512; }',
        'http {',
        `    access_log ${dir}/access.log;`,
        `    client_body_temp_path ${dir}/client_body;`,
        `    proxy_temp_path ${dir}/proxy;`,
        `    fastcgi_temp_path ${dir}/fastcgi;`,
        `    uwsgi_temp_path ${dir}/uwsgi;`,
        `    scgi_temp_path ${dir}/scgi;`,
        `    include ${dir}/ssed.conf;`,
        '}',
        '',
      ].join('\n'),
    );
    const args = ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')];
    await exec(NGINX, [...args, '-t', '-q'], { timeout: WAIT_MS });
    const child = spawn(NGINX, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    let exitCode = null;
    const exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        exitCode = code ?? signal;
        resolve(exitCode);
      }),
    );
    process.on('exit', () => child.kill('SIGKILL'));
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor('nginx to answer /healthz', async () => {
        if (exitCode !== null) throw new Error(`nginx exited (${exitCode}): ${stderr}`);
        const response = await fetch(`${base}/healthz`);
        return response.ok;
      });
    } catch (err) {
      lastError = err;
      child.kill('SIGKILL');
      await exited;
      const log = fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
      if (/Address already in use/.test(log + stderr)) continue; // lost the port race; try another
      throw new Error(`${err.message}\nerror.log:\n${log}`);
    }
    return {
      base,
      port,
      dir,
      errorLog: () => fs.readFileSync(path.join(dir, 'error.log'), 'utf8'),
      async stop() {
        if (exitCode === null) {
          // Fast shutdown: a graceful one (SIGQUIT) would wait for streams,
          // which never end by themselves.
          child.kill('SIGTERM');
          await withTimeout(exited, WAIT_MS, 'nginx to exit');
        }
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastError;
}

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
