// What the web-app tests share: the app's origin (the chorus binary itself, or a small proxy that
// serves a fresh web/dist and forwards the API), a page with camera and microphone allowed, and
// logging in through the login form with the code from the server's outbox.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { repo, fakeDisplayMedia } from './harness.mjs';

export const dist = path.join(repo, 'web', 'dist');

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** web/dist on a loopback port, everything else forwarded to the chorus server. */
function startProxy(target) {
  const t = new URL(target);
  const forwarded = (p) => p.startsWith('/v1/') || p.startsWith('/sdk/') || p === '/healthz';
  const srv = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (forwarded(p)) {
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
      return;
    }
    let file = path.join(dist, path.normalize(p).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dist, 'index.html');
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  srv.on('upgrade', (req, socket, head) => {
    const up = net.connect(Number(t.port), t.hostname, () => {
      let h = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) h += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(h + '\r\n');
      if (head?.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

/** `{ base, close }`: the server itself when it serves the app, else the proxy (WEB_APP_PROXY=1 forces the proxy, to test a
 * fresh web/dist without rebuilding the binary that embeds it). */
export async function webApp(server) {
  const r = process.env.WEB_APP_PROXY ? null : await fetch(server.base + '/').catch(() => null);
  const text = r && r.ok ? await r.text() : '';
  if (/<div id="app">/.test(text) && /chorus/i.test(text)) {
    console.log('web app served by chorus itself');
    return { base: server.base, close: async () => {} };
  }
  console.log('web app served by the test proxy');
  const proxy = await startProxy(server.base);
  const close = async () => {
    proxy.closeAllConnections?.();
    await new Promise((r) => proxy.close(r));
  };
  return { base: `http://127.0.0.1:${proxy.address().port}`, close };
}

export async function newPage(browser, base, label, { fakeScreen = false } = {}) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  await ctx.grantPermissions(['camera', 'microphone', 'clipboard-read', 'clipboard-write'], { origin: base });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) page.on('console', (m) => console.log(`[${label}]`, m.text()));
  // Headless Chromium has no desktop to capture: getDisplayMedia answers with a canvas.
  if (fakeScreen) await fakeDisplayMedia(page);
  return page;
}

export const tid = (id) => `[data-testid="${id}"]`;
export const tile = (address, sid) => `${tid('tile')}[data-address="${address}"][data-sid="${sid}"]`;

export async function loginUI(server, page, url, email, name) {
  await page.goto(url);
  await page.fill(tid('login-name'), name);
  await page.fill(tid('login-email'), email);
  await page.click(tid('login-send'));
  await page.waitForSelector(tid('login-code'));
  await page.fill(tid('login-code'), server.codeFor(email));
  await page.click(tid('login-verify'));
}
