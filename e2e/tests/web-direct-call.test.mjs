// 1:1 calls in the web app (web/, built into web/dist) in real Chromium against a real
// `chorus serve`, through its UI only: in a room's chat, Bob opens a 1:1 chat with the owner and
// presses Call; the owner's tab shows the incoming-call dialog and answers; each tab decodes the
// other's camera in the call window; Bob hangs up and both windows close with "Call ended".
// A voice call before it is declined. (The web app is served as web-app.test.mjs serves it.)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Server, launchBrowser, until, screenshot } from '../lib/harness.mjs';
import { dist, webApp, newPage as openPage, loginUI as login, tid } from '../lib/webapp.mjs';

let server;
let browser;
let app;
let base;

before(async () => {
  assert.ok(fs.existsSync(path.join(dist, 'index.html')), 'build the app first: cd web && npm run build');
  server = await Server.start();
  app = await webApp(server);
  base = app.base;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await server?.stop();
});

const newPage = (label, opts) => openPage(browser, base, label, opts);
const loginUI = (page, url, email, name) => login(server, page, url, email, name);

/** Waits until the 1:1 call window's remote video shows frames that keep rising. */
async function remoteRising(page) {
  try {
    await remoteRisingInner(page);
  } catch (e) {
    const state = await page.evaluate(async () => {
      const gc = window.__chorus?.client.groupCall;
      const v = document.querySelector('[data-testid="direct-remote"]');
      const inbound = [];
      const pc = gc?.peerConnections.subscribe;
      if (pc) (await pc.getStats()).forEach((s) => s.type === 'inbound-rtp' && inbound.push([s.kind, s.bytesReceived, s.framesDecoded]));
      return {
        gid: gc?.gid,
        active: gc?.active,
        participants: gc ? [...gc.participants.keys()] : null,
        streams: gc ? [...gc.streams.values()].map((r) => [r.address, r.sid, r.subscribed, !!r.tracks.video]) : null,
        published: gc ? [...gc.published.keys()] : null,
        element: v ? { src: !!v.srcObject, ready: v.readyState, w: v.videoWidth } : null,
        inbound,
        notice: document.querySelector('[data-testid="direct-notice"]')?.textContent ?? null,
        status: document.querySelector('[data-testid="direct-call"]')?.getAttribute('data-status') ?? null,
      };
    });
    throw new Error(`${e.message}\n${JSON.stringify(state)}`);
  }
}

async function remoteRisingInner(page) {
  const first = await until(
    page,
    () => {
      const v = document.querySelector('[data-testid="direct-remote"]');
      if (!v || v.readyState < 2 || !v.videoWidth) return false;
      const n = v.getVideoPlaybackQuality().totalVideoFrames;
      return n >= 5 && n;
    },
    undefined,
    45_000,
  );
  await until(page, (min) => (document.querySelector('[data-testid="direct-remote"]')?.getVideoPlaybackQuality().totalVideoFrames ?? 0) >= min, first + 15, 45_000);
}

test('web app: from a 1:1 chat, a voice call declined, then a video call answered in the dialog, seen both ways, hung up', async () => {
  const po = await newPage('Owner');
  const pb = await newPage('Bob');
  await loginUI(po, base + '/', 'd-owner@example.org', 'Owner');
  await po.waitForSelector(tid('room-create'));
  await po.fill(tid('room-name'), 'Desk');
  await po.selectOption(tid('room-quality'), '10');
  await po.click(tid('room-create'));
  await po.waitForSelector(tid('room-created'));
  const pubLink = await po.inputValue(tid('invite-publisher'));
  await po.click(tid('enter-room'));
  await po.click(tid('join-call'));
  await po.waitForSelector(tid('call'));
  await loginUI(pb, pubLink, 'd-bob@example.org', 'Bob');
  await pb.click(tid('join-call'));
  for (const page of [po, pb]) await until(page, () => window.__chorus?.call?.participants.size === 2);
  const o = await po.evaluate(() => window.__chorus.call.address);
  const b = await pb.evaluate(() => window.__chorus.call.address);

  // Bob opens a 1:1 chat with the owner and calls.
  await pb.click(tid('tab-people'));
  await pb.click(`${tid('participant')}[data-address="${o}"] ${tid('participant-message')}`);
  // A voice call first, declined: Bob is told, and both stay in the room.
  await pb.click(tid('chat-call-voice'));
  await po.waitForSelector(`${tid('incoming-call')}[data-from="${b}"]:has-text("voice")`);
  await po.click(tid('incoming-decline'));
  await pb.waitForSelector(`${tid('direct-notice')}:has-text("Owner declined the call")`);
  assert.equal(await po.locator(tid('incoming-call')).count(), 0);
  assert.equal(await pb.evaluate(() => window.__chorus.call.active), true, 'still in the room');

  // Then a video call, answered: it takes both tabs out of the room's call into the 1:1 call.
  await pb.click(tid('chat-call-video'));
  await pb.waitForSelector(`${tid('direct-call')}[data-status="ringing"]`);
  await po.waitForSelector(`${tid('incoming-call')}[data-from="${b}"]:has-text("Bob")`);
  await po.click(tid('incoming-answer'));
  for (const page of [po, pb]) {
    await page.waitForSelector(`${tid('direct-call')}[data-status="answered"]`);
    await remoteRising(page);
  }
  await screenshot(po, 'web-direct-call-owner');
  assert.equal(await po.locator(tid('incoming-call')).count(), 0, 'the dialog is gone once answered');

  // Bob hangs up: both windows close and say so.
  await pb.click(tid('direct-hangup'));
  for (const page of [po, pb]) {
    await page.waitForSelector(tid('direct-call'), { state: 'detached' });
    await page.waitForSelector(`${tid('direct-notice')}:has-text("Call ended")`);
  }
});
