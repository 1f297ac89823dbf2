// The web app (web/, built into web/dist) in real Chromium against a real `chorus serve`, driven
// through its UI only: three users log in with codes read from the outbox, the owner creates a
// room, the others join by its invite links, and everyone sees and decodes what they should
// (cameras, a screen share), chat with a read receipt and typing indicator, an admin mute that
// every tab shows, a view-only member who cannot publish, a leave that removes the tiles, and the
// room's "Record calls automatically" switch, which gets the next call recorded from its start.
//
// The page talks to the API on its own origin. Until the chorus binary serves web/dist at `/`,
// the test serves it through a tiny proxy (web/dist files; /v1, /sdk and WebSocket upgrades
// forwarded to the server). Once `curl -s $server/ | grep -i chorus` answers the app, the proxy
// steps aside by itself (see `webApp` in e2e/lib/webapp.mjs) and can be deleted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Server, launchBrowser, until, screenshot } from '../lib/harness.mjs';
import { dist, webApp, newPage as openPage, loginUI as login, tid, tile } from '../lib/webapp.mjs';

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

/** What a tile shows, for failure messages. */
async function tileState(page, address, sid) {
  return page.evaluate(
    async ({ address, sid }) => {
      const el = document.querySelector(`[data-testid="tile"][data-address="${address}"][data-sid="${sid}"]`);
      const v = el?.querySelector('video');
      const call = window.__chorus?.call;
      const rs = call?.stream(address, sid);
      const pc = call?.peerConnections.subscribe;
      const inbound = [];
      (await pc?.getStats())?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') inbound.push({ mid: s.mid, frames: s.framesDecoded, bytes: s.bytesReceived, w: s.frameWidth });
      });
      return {
        tile: !!el,
        video: !!v,
        readyState: v?.readyState,
        size: v ? `${v.videoWidth}x${v.videoHeight}` : null,
        frames: v?.getVideoPlaybackQuality().totalVideoFrames,
        srcTracks: v?.srcObject?.getTracks().map((t) => `${t.kind}:${t.readyState}:${t.muted}`),
        stream: rs ? { subscribed: rs.subscribed, layer: rs.layer, ended: rs.ended, tracks: Object.keys(rs.tracks).filter((k) => rs.tracks[k]), info: rs.info } : null,
        pc: pc ? `${pc.connectionState}/${pc.signalingState}` : null,
        inbound,
        client: window.__chorus?.client.state,
      };
    },
    { address, sid },
  );
}

/** Waits until the tile's video shows frames and its decoded count keeps rising. */
async function framesRising(page, address, sid) {
  const sel = tile(address, sid);
  try {
    const first = await until(
      page,
      (sel) => {
        const v = document.querySelector(`${sel} video`);
        if (!v || v.readyState < 2 || !v.videoWidth) return false;
        const n = v.getVideoPlaybackQuality().totalVideoFrames;
        return n >= 5 && n;
      },
      sel,
      45_000,
    );
    await until(page, ({ sel, min }) => (document.querySelector(`${sel} video`)?.getVideoPlaybackQuality().totalVideoFrames ?? 0) >= min, { sel, min: first + 15 }, 45_000);
  } catch (e) {
    throw new Error(`${e.message}\ntile ${address}:${sid}: ${JSON.stringify(await tileState(page, address, sid))}`);
  }
}

test('web app: login, create a room, join by link, video grid, view-only, chat receipts, screen share, admin mute, leave, auto-record switch', async () => {
  const po = await newPage('Owner');
  const pb = await newPage('Bob', { fakeScreen: true });
  const pv = await newPage('Viewer');

  // The owner logs in and creates a room in the UI (360p keeps this 2-core machine calm).
  await loginUI(po, base + '/', 'owner@example.org', 'Owner');
  await po.waitForSelector(tid('room-create'));
  await po.fill(tid('room-name'), 'Standup');
  await po.selectOption(tid('room-quality'), '10');
  await po.click(tid('room-create'));
  await po.waitForSelector(tid('room-created'));
  const pubLink = await po.inputValue(tid('invite-publisher'));
  const viewLink = await po.inputValue(tid('invite-viewer'));
  const gid = Number(await po.getAttribute(tid('room-created'), 'data-gid'));
  assert.match(pubLink, new RegExp(`/\\?room=${gid}&pin=`));
  assert.notEqual(pubLink, viewLink);
  assert.ok(await po.isVisible(tid('pin-publisher')));
  assert.ok(await po.isVisible(tid('pin-viewer')));

  // A wrong pin is explained in plain words.
  await po.fill(tid('join-gid'), String(gid));
  await po.fill(tid('join-pin'), '000000');
  await po.click(tid('join-submit'));
  await po.waitForSelector(`${tid('error')}:has-text("That pin doesn't open this room")`);

  // Into the room: pre-join with a camera preview, then the call.
  await po.click(tid('enter-room'));
  await po.waitForSelector(`${tid('preview-video')}`);
  await po.click(tid('join-call'));
  await po.waitForSelector(tid('call'));

  // Bob and the viewer open the invite links, log in, and land on the pre-join screen.
  await loginUI(pb, pubLink, 'bob@example.org', 'Bob');
  await pb.waitForSelector(tid('preview-video'));
  assert.equal(await pb.getAttribute(tid('prejoin'), 'data-view-only'), 'false');
  await pb.click(tid('join-call'));
  await loginUI(pv, viewLink, 'viewer@example.org', 'Viewer');
  await pv.waitForSelector(tid('view-only-notice'));
  await pv.click(tid('join-call'));
  for (const page of [po, pb, pv]) await until(page, () => window.__chorus?.call?.participants.size === 3);

  const addr = async (page) => page.evaluate(() => window.__chorus.call.address);
  const o = await addr(po);
  const b = await addr(pb);
  const v = await addr(pv);

  // Every tab decodes the other publishers' cameras.
  for (const [page, who] of [
    [po, [b]],
    [pb, [o]],
    [pv, [o, b]],
  ]) {
    for (const a of who) await framesRising(page, a, 0);
  }

  // The viewer sees everyone but has no publish controls, and publishes nothing.
  assert.equal(await pv.evaluate(() => window.__chorus.call.permissions.publish), false);
  assert.ok(await pv.isVisible(tid('watching')));
  for (const id of ['toggle-mic', 'toggle-cam', 'share-screen']) assert.equal(await pv.locator(tid(id)).count(), 0, `viewer has no ${id}`);
  assert.equal(await po.evaluate((a) => window.__chorus.call.participants.get(a)?.streams.length, v), 0);
  assert.equal(await po.locator(`${tile(v, 0)} video`).count(), 0, 'the viewer tile is an avatar');
  assert.equal(await pv.locator(tid('tile')).count(), 3, 'viewer sees three tiles');
  await screenshot(pv, 'web-viewer-grid');

  // Chat: typing shows, the message arrives, and its read receipt returns (✓✓).
  await po.click(tid('tab-chat'));
  await pb.click(tid('tab-chat'));
  await po.fill(tid('chat-input'), 'hello from the call');
  await pb.waitForSelector(`${tid('typing')}:has-text("Owner is typing")`);
  await po.click(tid('chat-send'));
  await pb.waitForSelector(`${tid('chat-message')}[data-from="${o}"]:has-text("hello from the call")`);
  await pv.waitForSelector(`${tid('chat-message')}[data-from="${o}"]:has-text("hello from the call")`);
  await po.waitForSelector(`${tid('chat-message')}[data-from="${o}"] ${tid('receipt')}[data-status="read"]`);
  assert.equal((await po.textContent(`${tid('chat-message')}[data-from="${o}"] ${tid('receipt')}`)).trim(), '✓✓');

  // A file goes up (tus), the message carries it, and it opens on the other side by a signed URL.
  await po.setInputFiles(tid('chat-file-input'), { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('agenda: ship it') });
  const href = await (await pb.waitForSelector(`${tid('chat-message')}[data-from="${o}"] ${tid('chat-file')} ${tid('chat-file-download')}[href^="http"]`)).getAttribute('href');
  assert.equal(await (await fetch(href)).text(), 'agenda: ship it');

  // 1:1: the viewer writes to the owner from the participant list; it is read, and ✓✓ returns.
  await pv.click(tid('tab-people'));
  await pv.click(`${tid('participant')}[data-address="${o}"] ${tid('participant-message')}`);
  await pv.fill(tid('chat-input'), 'just between us');
  await pv.click(tid('chat-send'));
  await po.click(`${tid('chat-conv')}[data-conv="p:${v}"]`);
  await po.waitForSelector(`${tid('chat-message')}[data-from="${v}"]:has-text("just between us")`);
  await pv.waitForSelector(`${tid('chat-message')}[data-from="${v}"] ${tid('receipt')}[data-status="read"]`);
  assert.equal(await pb.locator(`:text("just between us")`).count(), 0, 'Bob does not see the 1:1 message');

  // Bob shares a screen: the others get a second tile from him, with pictures.
  await pb.click(tid('share-screen'));
  await pb.waitForSelector(tid('stop-screen'));
  for (const page of [po, pv]) await framesRising(page, b, 1);
  await screenshot(pv, 'web-viewer-grid-screen');
  await screenshot(po, 'web-owner-grid');
  // Speaker view puts the shared screen on the stage, the cameras in a strip.
  await po.click(tid('toggle-view'));
  await po.waitForSelector(`${tid('speaker-view')} .stage ${tile(b, 1)}`);
  await screenshot(po, 'web-owner-speaker-view');
  await po.click(tid('toggle-view'));
  await po.waitForSelector(tid('grid'));

  // The owner (admin) mutes Bob's microphone from the participant list: every tab shows it.
  await po.click(tid('tab-people'));
  await po.click(`${tid('participant')}[data-address="${b}"] ${tid('admin-mute-audio')}`);
  for (const page of [po, pb, pv]) await page.waitForSelector(`${tile(b, 0)} ${tid('tile-mic-off')}[data-admin="true"]`);
  assert.ok(await pb.isDisabled(tid('toggle-mic')), 'Bob cannot unmute himself');
  await screenshot(pb, 'web-bob-muted');

  // The owner records the call: every tab shows REC with who started it; the viewer has no button.
  assert.equal(await pv.locator(tid('toggle-record')).count(), 0, 'the viewer cannot record');
  await po.click(tid('toggle-record'));
  for (const page of [po, pb, pv]) await page.waitForSelector(`${tid('recording')}[data-by="${o}"]`);
  await screenshot(pv, 'web-viewer-recording');
  await po.click(tid('toggle-record'));
  for (const page of [po, pb, pv]) await until(page, () => !document.querySelector('[data-testid="recording"]'));

  // Bob leaves: his tiles go away everywhere.
  await pb.click(tid('leave'));
  await pb.waitForSelector(tid('room-list'));
  for (const page of [po, pv]) {
    await until(page, (a) => !document.querySelector(`[data-testid="tile"][data-address="${a}"]`), b);
  }
  assert.equal(await pv.locator(tid('tile')).count(), 2);
  await screenshot(pv, 'web-viewer-after-leave');

  // Phone-sized: the grid stacks, the panel becomes a full-screen drawer.
  await pv.setViewportSize({ width: 390, height: 780 });
  await pv.click(tid('toggle-chat'));
  await screenshot(pv, 'web-viewer-phone');
  assert.equal(await pv.locator(tid('panel')).count(), 0, 'chat closed');
  await pv.click(tid('toggle-chat'));
  await screenshot(pv, 'web-viewer-phone-chat');
  await pv.setViewportSize({ width: 1280, height: 800 });

  // The call ends. The owner turns on "Record calls automatically" for the room (the viewer,
  // not an admin, has no such switch); the next call is recorded from its first join, for the
  // owner, with nobody pressing Record, and everyone in it sees REC.
  for (const page of [po, pv]) {
    await page.click(tid('leave'));
    await page.waitForSelector(tid('room-list'));
  }
  await pv.waitForSelector(tid(`open-room-${gid}`));
  assert.equal(await pv.locator(tid(`auto-record-${gid}`)).count(), 0, 'the viewer cannot change the room');
  const autoRecord = tid(`auto-record-${gid}`);
  assert.equal(await po.isChecked(autoRecord), false);
  await po.check(autoRecord);
  await until(po, (sel) => document.querySelector(sel)?.checked === true, autoRecord);
  await po.reload();
  await po.waitForSelector(autoRecord);
  assert.equal(await po.isChecked(autoRecord), true, 'the setting is kept by the server');
  for (const page of [po, pv]) {
    await page.click(tid(`open-room-${gid}`));
    await page.click(tid('join-call'));
    await page.waitForSelector(tid('call'));
    await page.waitForSelector(`${tid('recording')}[data-by="${o}"]`);
  }
  await screenshot(pv, 'web-viewer-auto-recorded');
  for (const page of [po, pv]) {
    await page.click(tid('leave'));
    await page.waitForSelector(tid('room-list'));
  }
});
