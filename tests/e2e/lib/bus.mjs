// The bus for the JavaScript end-to-end tests: a throwaway redis-server and
// ssed processes sharing one stream through it (`--bus`).
//
// - startRedis(): `redis-server` on a Unix socket in a new temporary
//   directory, as tools/testkit/src/redis.rs does for the Rust tests:
//
//     redis-server --port 0 --unixsocket DIR/redis.sock --dir DIR --save ''
//                  --appendonly yes --appendfsync always     (persistence 'aof')
//                  --appendonly no                           (persistence 'none')
//
//   With 'aof', every XADD is in the append-only file before Redis answers
//   it, so a SIGKILL loses nothing ssed acknowledged and a restart (same
//   socket, same directory) reads it all back. kill() is SIGKILL; restart()
//   starts it again and polls PING until +PONG (-LOADING means not yet).
//   A missing redis-server fails the test with a hint; it never skips.
//
// - startBusPair(): two `ssed --bus` processes, A and B, sharing one port
//   with --reuseport, each also on a port of its own so that a test can
//   reach a particular one:
//
//            ┌── 127.0.0.1:S (--reuseport, shared) ──┐
//     ssed A ┤                                       ├ ssed B
//            └── 127.0.0.1:a (own)     127.0.0.1:b ──┘ (own)
//                        \                 /
//                   redis+unix:///DIR/redis.sock
//
//   A binds 127.0.0.1:0 with SO_REUSEPORT and B binds the port A got: no
//   port is guessed, and the kernel never hands a bound port to another
//   bind(0), so parallel tests never share one. Each is ready when
//   /healthz answers 200 (both of its Redis connections are up).
//
// Every process started here is killed when the test process exits, and
// every temporary directory removed, even when a test fails half-way.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { WAIT_MS, startSsed, waitFor, withTimeout } from './harness.mjs';

export const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';

/** Every redis-server started here and not seen exit, and their directories. */
const live = new Set();
const dirs = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Sends one inline command on a fresh connection; resolves to the whole reply text. */
export function redisCommand(socketPath, command, { timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection({ path: socketPath });
    let text = '';
    let expected = null;
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`redis ${command}: no complete reply in ${timeoutMs} ms (got ${JSON.stringify(text)})`));
    }, timeoutMs);
    const done = (err, value) => {
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    conn.setEncoding('latin1');
    conn.on('error', (err) => done(err));
    conn.on('connect', () => conn.write(`${command}\r\n`));
    conn.on('data', (chunk) => {
      text += chunk;
      const eol = text.indexOf('\r\n');
      if (eol < 0) return;
      if (text[0] !== '$') return done(null, text.slice(0, eol));
      // A bulk string: `$<len>\r\n<bytes>\r\n`.
      expected ??= Number(text.slice(1, eol));
      if (expected < 0) return done(null, null);
      if (text.length >= eol + 2 + expected) done(null, text.slice(eol + 2, eol + 2 + expected));
    });
    conn.on('end', () => done(new Error(`redis ${command}: connection closed (got ${JSON.stringify(text)})`)));
  });
}

/**
 * Starts redis-server on a Unix socket in a new temporary directory;
 * persistence 'aof' (appendonly yes, appendfsync always) or 'none'.
 */
export async function startRedis({ persistence = 'aof' } = {}) {
  // Short: a Unix socket's path must fit in 108 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssed-e2e-redis-'));
  dirs.add(dir);
  const socket = path.join(dir, 'redis.sock');
  let child = null;
  let exited = null;

  const logTail = (n = 20) => {
    try {
      return fs.readFileSync(path.join(dir, 'redis.log'), 'utf8').trimEnd().split('\n').slice(-n).join('\n');
    } catch {
      return '(no redis.log)';
    }
  };

  async function kill() {
    if (!child) return;
    const gone = exited;
    child.kill('SIGKILL');
    await withTimeout(gone, WAIT_MS, 'redis-server to exit after SIGKILL');
    child = null;
  }

  async function restart() {
    await kill();
    // A killed server leaves its socket file behind: it must not answer our PING.
    fs.rmSync(socket, { force: true });
    const persist =
      persistence === 'aof' ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    const args = [
      '--port', '0',
      '--unixsocket', socket,
      '--unixsocketperm', '700',
      '--dir', dir,
      '--save', '',
      '--daemonize', 'no',
      '--logfile', 'redis.log',
      ...persist,
    ];
    const started = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    let status = null;
    exited = new Promise((resolve) => {
      started.on('error', (err) => {
        status = { error: err };
        live.delete(started);
        resolve(status);
      });
      started.on('exit', (code, signal) => {
        status = { code, signal };
        live.delete(started);
        resolve(status);
      });
    });
    live.add(started);
    child = started;
    // Polls until PONG, or until the child is gone (then ends at once).
    const pong = async () => status || (await redisCommand(socket, 'PING')) === '+PONG';
    await waitFor('redis-server to answer PING', pong).catch((err) => {
      throw new Error(`${err.message}\nits log:\n${logTail()}`);
    });
    if (status?.error?.code === 'ENOENT') {
      const hint = 'install the Debian package redis-server, as ./test.sh does, or set REDIS_SERVER';
      throw new Error(`cannot run ${REDIS_SERVER}: not found (${hint})`);
    }
    if (status) {
      throw new Error(`redis-server exited at start (${JSON.stringify(status)}); its log:\n${logTail()}`);
    }
  }

  await restart();
  return {
    dir,
    socket,
    /** As ssed's --bus takes it. */
    url: `redis+unix://${socket}`,
    kill,
    restart,
    logTail,
    /** Sends one inline command; the reply's text. */
    command: (text) => redisCommand(socket, text),
    /** How many times Redis ran `name` (INFO commandstats), 0 if never. */
    async calls(name) {
      const info = await redisCommand(socket, 'INFO commandstats');
      const match = new RegExp(`^cmdstat_${name.toLowerCase()}:calls=(\\d+)`, 'm').exec(info);
      return match ? Number(match[1]) : 0;
    },
    /** Kills it and removes its directory. */
    async stop() {
      await kill();
      fs.rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}

/** Polls /healthz until it answers `status`. */
export async function waitHealth(ssed, status, { timeoutMs = WAIT_MS } = {}) {
  let last;
  await waitFor(
    `ssed on port ${ssed.port}: /healthz ${status}`,
    async () => {
      last = await ssed.health();
      return last.status === status;
    },
    { timeoutMs },
  ).catch((err) => {
    throw new Error(`${err.message} (last: ${JSON.stringify(last)})\nits log:\n${ssed.log().slice(-3000)}`);
  });
}

/**
 * Starts ssed with `--bus <redis>` on a port of its own, after `shared`
 * when given (with --reuseport). `shared` 0 opens a new shared port.
 * Resolves once /healthz answers 200.
 */
export async function startBusSsed(redis, { shared, args = [] } = {}) {
  const listen = shared === undefined ? ['127.0.0.1:0'] : [`127.0.0.1:${shared}`, '127.0.0.1:0'];
  const reuse = shared === undefined ? [] : ['--reuseport'];
  const ssed = await startSsed(['--bus', redis.url, '--tick', '0', '--heartbeat', '1', ...reuse, ...args], {
    listen,
  });
  ssed.shared = shared === undefined ? null : ssed.ports[0];
  try {
    await waitHealth(ssed, 200);
  } catch (err) {
    await ssed.kill();
    throw err;
  }
  return ssed;
}

/** Two processes on one Redis, sharing a port; see the module doc. */
export async function startBusPair(redis, { args = [] } = {}) {
  const a = await startBusSsed(redis, { shared: 0, args });
  let b;
  try {
    b = await startBusSsed(redis, { shared: a.shared, args });
  } catch (err) {
    await a.kill();
    throw err;
  }
  return { a, b, shared: a.shared, sharedBase: `http://127.0.0.1:${a.shared}` };
}

/** Orders two stream ids `<ms>-<seq>`: negative, zero or positive. */
export function compareIds(x, y) {
  const [xm, xs] = x.split('-').map(BigInt);
  const [ym, ys] = y.split('-').map(BigInt);
  if (xm !== ym) return xm < ym ? -1 : 1;
  return xs === ys ? 0 : xs < ys ? -1 : 1;
}

export const STREAM_ID = /^\d+-\d+$/;
