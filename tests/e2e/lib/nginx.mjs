// nginx for the tests: the shipped deploy/nginx.conf with only its `listen`
// line and upstream address rewritten to loopback test ports, run in the
// foreground from a temporary prefix (pid, logs and temp files in there).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { REPO_DIR, WAIT_MS, waitFor, withTimeout } from './harness.mjs';

const exec = promisify(execFile);
export const NGINX = process.env.NGINX_PATH || '/usr/sbin/nginx';
export const SHIPPED = path.join(REPO_DIR, 'deploy', 'nginx.conf');

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The shipped site config with only `listen` and the upstream address changed. */
export function siteConfig(shipped, listenPort, upstreamPort) {
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
  return text;
}

/** Runs nginx in the foreground from a temporary prefix; resolves once it answers. */
export async function startNginx(upstreamPort) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssed-e2e-nginx-'));
  const shipped = fs.readFileSync(SHIPPED, 'utf8');
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'ssed.conf'), siteConfig(shipped, port, upstreamPort));
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

