// Shared helpers for the JavaScript end-to-end tests.
//
// - startSsed(): runs the real release binary on 127.0.0.1:0 (or a given
//   port), learns the port from its "listening on" log line, stops it with
//   SIGTERM and waits for it to exit.
// - startCutProxy(): a TCP proxy on loopback that a test can cut, to drop a
//   live stream while the server keeps running; it can hold new connections
//   until it is resumed, so a test sees the client's reconnect request.
// - waitFor(): polls a condition with a deadline. Nothing here sleeps to
//   synchronise: every wait has a deadline and fails with a message.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(E2E_DIR, '..', '..');
export const SSED_BIN = process.env.SSED_BIN || path.join(REPO_DIR, 'target', 'release', 'ssed');

/** How long any single wait may take before a test fails. */
export const WAIT_MS = 15_000;

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (sync or async) until it returns a truthy value, and returns
 * that value; throws with `what` in the message after `timeoutMs`.
 */
export async function waitFor(what, check, { timeoutMs = WAIT_MS, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await delay(intervalMs);
  }
}

/** Rejects with a clear message if `promise` has not settled in `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Every process this module started and has not seen exit. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * Starts `ssed` with `args` (plus `--listen 127.0.0.1:<port>`, port 0 by
 * default). Resolves once it logs its address.
 *
 * `listen` replaces that one `--listen` with several, bound (and logged)
 * in the order given: `ports` are theirs, in that order, and `port` and
 * `base` are the last one's (with `--reuseport`, the bus tests put the
 * shared port first and the process's own port last).
 */
export async function startSsed(args = [], { port = 0, env = {}, listen } = {}) {
  const listens = listen ?? [`127.0.0.1:${port}`];
  const child = spawn(SSED_BIN, [...listens.flatMap((addr) => ['--listen', addr]), ...args], {
    env: { ...process.env, RUST_LOG: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  live.add(child);
  let log = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    log += chunk;
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  let exitStatus = null;
  exited.then((status) => {
    exitStatus = status;
  });
  const addrs = await waitFor('ssed to log its address', () => {
    if (exitStatus) throw new Error(`ssed exited early (${JSON.stringify(exitStatus)}): ${log}`);
    const matches = [...log.matchAll(/listening on http:\/\/(127\.0\.0\.1):(\d+)/g)];
    return matches.length >= listens.length && matches.map((m) => ({ host: m[1], port: Number(m[2]) }));
  });
  const addr = addrs[listens.length - 1];
  const base = `http://${addr.host}:${addr.port}`;
  async function postPublish(data, { topic, event, headers = {} } = {}) {
    const params = new URLSearchParams();
    if (topic !== undefined) params.set('topic', topic);
    if (event !== undefined) params.set('event', event);
    const response = await fetch(`${base}/publish?${params}`, { method: 'POST', body: data, headers });
    const text = await response.text();
    return { status: response.status, retryAfter: response.headers.get('retry-after'), text };
  }
  return {
    child,
    port: addr.port,
    ports: addrs.slice(0, listens.length).map((a) => a.port),
    base,
    log: () => log,
    exited,
    /** SIGTERM, then waits for exit; resolves to {code, signal}. */
    async stop() {
      if (exitStatus) return exitStatus;
      child.kill('SIGTERM');
      try {
        return await withTimeout(exited, WAIT_MS, 'ssed to exit after SIGTERM');
      } catch (err) {
        child.kill('SIGKILL');
        throw err;
      }
    },
    /** SIGKILL, as a crash: no shutdown, no goodbye; waits for the exit. */
    async kill() {
      if (exitStatus) return exitStatus;
      child.kill('SIGKILL');
      return withTimeout(exited, WAIT_MS, 'ssed to exit after SIGKILL');
    },
    /** POST /publish, whatever the answer: {status, retryAfter, text}. */
    postPublish,
    /** POST /publish; resolves to the parsed JSON answer ({id, subscribers}). */
    async publish(data, options = {}) {
      const { status, text } = await postPublish(data, options);
      if (status !== 200) throw new Error(`publish answered ${status}: ${text}`);
      return JSON.parse(text);
    },
    /** GET /healthz: {status, text}. */
    async health() {
      const response = await fetch(`${base}/healthz`);
      return { status: response.status, text: await response.text() };
    },
    async stats() {
      const response = await fetch(`${base}/stats`);
      return response.json();
    },
  };
}

/**
 * A TCP proxy 127.0.0.1:<ephemeral> -> 127.0.0.1:targetPort.
 *
 * cut(): destroys every proxied connection (both sides) and, from then on,
 * holds new connections: they are accepted and what they send is kept, but
 * nothing is forwarded until resume(). held() lists the held connections
 * with the bytes each has sent so far (a client's reconnect request).
 */
export async function startCutProxy(targetPort) {
  const pairs = new Set();
  const heldConns = [];
  let holding = false;

  function pipe(client, firstBytes) {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    if (firstBytes.length) upstream.write(Buffer.concat(firstBytes));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  const server = net.createServer((client) => {
    client.setNoDelay(true);
    if (!holding) {
      pipe(client, []);
      return;
    }
    const entry = { client, bytes: [] };
    heldConns.push(entry);
    const onData = (chunk) => entry.bytes.push(chunk);
    entry.onData = onData;
    client.on('data', onData);
    client.on('error', () => {});
    client.on('close', () => {
      entry.closed = true;
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;

  return {
    port,
    base: `http://127.0.0.1:${port}`,
    /** Number of connections currently piped through. */
    activeCount: () => pairs.size,
    cut() {
      holding = true;
      for (const pair of [...pairs]) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
    },
    /** Held connections still open, each with the text it has sent so far. */
    held: () =>
      heldConns
        .filter((entry) => !entry.closed)
        .map((entry) => ({ text: Buffer.concat(entry.bytes).toString('latin1') })),
    resume() {
      holding = false;
      for (const entry of heldConns.splice(0)) {
        if (entry.closed) continue;
        entry.client.removeListener('data', entry.onData);
        pipe(entry.client, entry.bytes);
      }
    },
    async close() {
      for (const pair of [...pairs]) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      for (const entry of heldConns) entry.client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Reads a header value (case-insensitive) out of raw request text. */
export function headerOf(requestText, name) {
  const re = new RegExp(`^${name}:[ \\t]*(.*?)\\r?$`, 'im');
  const match = re.exec(requestText);
  return match ? match[1] : null;
}

/**
 * Records, in order, every event `es` fires of the types `message`,
 * `connected`, `gap` and `names`, as {type, data, lastEventId}, and every
 * error; resolves once the stream is open. `next(what, pred)` waits for the
 * first recorded event matching `pred`.
 */
export async function recordEvents(es, names = []) {
  const events = [];
  const errors = [];
  for (const name of new Set(['message', 'connected', 'gap', ...names])) {
    es.addEventListener(name, (e) => events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId }));
  }
  es.addEventListener('error', (e) => errors.push(e));
  await waitFor('EventSource to open', () => es.readyState === es.OPEN);
  return { events, errors, next: (what, pred) => waitFor(what, () => events.find(pred)) };
}
