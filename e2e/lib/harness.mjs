// Test harness: a real `chorus serve` on free loopback ports with a temp data dir, users logged in
// with the codes it writes to its outbox, and Debian's Chromium driven by playwright-core with a
// fake camera and microphone.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const artifacts = path.join(repo, 'target', 'e2e-artifacts');

/** The chorus binary: CHORUS_BIN, else the debug build. */
function chorusBin() {
  const bin = process.env.CHORUS_BIN || path.join(repo, 'target', 'debug', 'chorus');
  if (!fs.existsSync(bin)) throw new Error(`${bin} not found: build it first (cargo build -p chorus)`);
  return bin;
}

export class Server {
  static async start(env = {}) {
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-e2e-'));
    const child = spawn(chorusBin(), ['serve', '--listen', '127.0.0.1:0', '--data', data], {
      env: {
        ...process.env,
        CHORUS_RTC_UDP_PORT: '0',
        CHORUS_RTC_TCP_PORT: '0',
        CHORUS_CODE_REQUESTS_PER_IP: '100000',
        CHORUS_LOG: process.env.CHORUS_TEST_LOG || 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const base = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('chorus did not start within 60 s')), 60_000);
      child.stdout.on('data', (d) => {
        out += String(d);
        const m = /Chorus listening on (\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on('exit', (code) => reject(new Error(`chorus exited with ${code}`)));
    });
    const s = new Server();
    Object.assign(s, { child, data, base });
    return s;
  }

  async stop() {
    this.child.kill();
    await new Promise((r) => (this.child.exitCode !== null ? r() : this.child.on('exit', r)));
    fs.rmSync(this.data, { recursive: true, force: true });
  }

  async api(method, route, body, token) {
    const r = await fetch(this.base + route, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    const json = text ? JSON.parse(text) : null;
    if (!r.ok) throw new Error(`${method} ${route}: HTTP ${r.status} ${text}`);
    return json;
  }

  /** The newest login code mailed to `email`. */
  codeFor(email) {
    const dir = path.join(this.data, 'outbox');
    const mails = fs
      .readdirSync(dir)
      .sort()
      .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
      .filter((b) => b.split('\n').some((l) => l.startsWith('To:') && l.toLowerCase().includes(email.toLowerCase())));
    const m = /login code is (\d{6})/.exec(mails.at(-1) || '');
    if (!m) throw new Error(`no login code for ${email}`);
    return m[1];
  }

  /** Logs a user in through the outbox; returns `{ token, user }`. */
  async login(email, name) {
    await this.api('POST', '/v1/auth/code', { email });
    const code = this.codeFor(email);
    return this.api('POST', '/v1/auth/verify', { email, code, name });
  }
}

/** Debian's Chromium with a fake camera and microphone; `args` are added. Not `--headless` in the
 * args: playwright's own headless switch is used. */
export async function launchBrowser({ args = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--auto-select-desktop-capture-source=Entire screen',
      ...args,
    ],
  });
}

/** A fresh page on the server's origin (a secure context: 127.0.0.1) with the SDK bundle loaded
 * the way an app loads it, by a script tag served by chorus. */
export async function sdkPage(browser, server, label) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) page.on('console', (m) => console.log(`[${label}]`, m.text()));
  await page.goto(server.base + '/healthz');
  await page.setContent(`<!doctype html><html><body><h3>${label}</h3><div id="tiles"></div>
    <script src="${server.base}/sdk/chorus.js"></script></body></html>`);
  await page.waitForFunction(() => typeof window.Chorus === 'object');
  return page;
}

/** Headless Chromium has no desktop to capture: makes the page's `getDisplayMedia` answer with a
 * moving canvas (call before the page loads). */
export async function fakeDisplayMedia(page) {
  await page.addInitScript(() => {
    navigator.mediaDevices.getDisplayMedia = async () => {
      const c = document.createElement('canvas');
      c.width = 1280;
      c.height = 720;
      const g = c.getContext('2d');
      let n = 0;
      setInterval(() => {
        g.fillStyle = `hsl(${(n += 7) % 360} 60% 50%)`;
        g.fillRect(0, 0, c.width, c.height);
        g.fillStyle = '#fff';
        g.font = '96px sans-serif';
        g.fillText(`screen ${n}`, 100, 360);
      }, 50);
      return c.captureStream(15);
    };
  });
}

/** A fresh page on `base`'s origin with the SDK bundle of this tree (sdk/dist/chorus.js), so a
 * test runs the SDK as committed even against a server binary built before the bundle changed. */
export async function treeSdkPage(browser, base, label) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) p.on('console', (m) => console.log(`[${label}]`, m.text()));
  await p.goto(base + '/healthz');
  await p.setContent(`<!doctype html><html><body><h3>${label}</h3><div id="tiles"></div></body></html>`);
  await p.addScriptTag({ path: path.join(repo, 'sdk', 'dist', 'chorus.js') });
  await p.waitForFunction(() => typeof window.Chorus === 'object');
  return p;
}

/** Gives the page `window.t.decoded(address)`: frames decoded so far of the video track
 * `address`'s camera is received on now, in the call `window.t.call`. */
export async function addDecodedCounter(p) {
  await p.evaluate(() => {
    const call = window.t.call;
    window.t.decoded = async (address) => {
      const id = call.stream(address, 0)?.tracks.video?.id;
      const pc = call.peerConnections.subscribe;
      if (!id || !pc) return 0;
      let n = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === id) n = s.framesDecoded || 0;
      });
      return n;
    };
  });
}

/** Waits until the page's `window.t.decoded(address)` (the test's count of frames decoded of
 * `address`'s camera) reaches `min`; returns the count. */
export function decodedAtLeast(p, address, min, timeout) {
  return until(
    p,
    async ({ address, min }) => {
      const n = await window.t.decoded(address);
      return n >= min ? n : false;
    },
    { address, min },
    timeout,
  );
}

/**
 * Waits until `fn` (run in the page, sync or async) returns a truthy value; returns it.
 * Polled from here with `page.evaluate`, which awaits a returned promise: `waitForFunction`
 * would take an async function's promise itself as the truthy answer and not wait at all.
 */
export async function until(page, fn, arg, timeout = 30_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await page.evaluate(fn, arg);
    if (value) return value;
    if (Date.now() > end) throw new Error(`until: still false after ${timeout} ms: ${fn.toString().slice(0, 200)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  // Background pages are not painted: bring it to the front and let it render a frame.
  await page.bringToFront();
  await page.waitForTimeout(500);
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
}

/** What ffprobe (Debian's ffmpeg) reads of a media file: its JSON (format and streams) and the
 * first and last packet time of its video and its audio. */
export function ffprobe(file) {
  const info = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_format', '-show_streams', '-of', 'json', file]));
  const span = (sel) => {
    const out = execFileSync('ffprobe', ['-v', 'error', '-select_streams', sel, '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file]);
    const times = String(out).split('\n').map((l) => parseFloat(l)).filter((n) => Number.isFinite(n));
    if (times.length === 0) throw new Error(`no ${sel} packets in ${file}`);
    return [times[0], times[times.length - 1]];
  };
  return { info, video: span('v'), audio: span('a') };
}

/** Downloads a stored file through a signed URL into `dir`; returns its path. */
export async function downloadFile(server, token, id, dir, ext) {
  const { url } = await server.api('POST', `/v1/files/${id}/url`, {}, token);
  const bytes = Buffer.from(await (await fetch(server.base + url)).arrayBuffer());
  const file = path.join(dir, `${id}.${ext}`);
  fs.writeFileSync(file, bytes);
  return { file, url };
}
