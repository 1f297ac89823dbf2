// The browser SDK (served by chorus at /sdk/chorus.js, loaded by a script tag) in real Chromium
// against a real `chorus serve`: three users log in with codes read from the outbox, the owner
// creates a room, a publisher and a view-only member join by pin, and everyone in the call sees
// and decodes what they should.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launchBrowser, sdkPage, until, screenshot } from '../lib/harness.mjs';

let server;
let browser;

before(async () => {
  server = await Server.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** In the page: connect, join the call, show every received video in a tile, count decoded frames. */
async function joinInPage(page, { token, gid }) {
  return page.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 } });
      const t = (window.t = { client, call, messages: [], receipts: [], events: [], errors: [], local: {} });
      client.on('message', (m) => t.messages.push(m));
      client.on('receipt', (r) => t.receipts.push(r));
      call.on('event', (e) => t.events.push(e));
      call.on('error', (e) => t.errors.push(String(e)));
      call.on('track', (e) => {
        if (e.kind !== 'video') return;
        const v = document.createElement('video');
        v.autoplay = true;
        v.muted = true;
        v.playsInline = true;
        v.width = 320;
        v.height = 180;
        v.dataset.key = `${e.publisher}:${e.sid}`;
        v.srcObject = new MediaStream([e.track]);
        document.getElementById('tiles').appendChild(v);
        e.stream.attach(v);
      });
      call.on('track-removed', (e) => {
        document.querySelectorAll(`video[data-key="${e.publisher}:${e.sid}"]`).forEach((v) => v.remove());
      });
      // Frames decoded per (publisher, sid), from the subscribe connection's stats.
      t.keys = {};
      call.on('track', (e) => (t.keys[e.track.id] = `${e.publisher}:${e.sid}`));
      t.decoded = async () => {
        const pc = call.peerConnections.subscribe;
        const out = {};
        if (!pc) return out;
        (await pc.getStats()).forEach((s) => {
          if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
          const key = t.keys[s.trackIdentifier] || `mid:${s.mid}`;
          out[key] = Math.max(out[key] || 0, s.framesDecoded || 0);
        });
        return out;
      };
      return { address: client.address, permissions: call.permissions };
    },
    { server: server.base, token, gid },
  );
}

async function publishCamera(page) {
  return page.evaluate(async () => {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
    const local = await window.t.call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
    window.t.local[0] = local;
    return { sid: local.sid };
  });
}

/** Decoded frame count of `key` ("address:sid") in the page, once it passes `min`. */
async function decodedAtLeast(page, key, min) {
  return until(
    page,
    async ({ key, min }) => {
      const d = await window.t.decoded();
      return d[key] >= min ? d[key] : false;
    },
    { key, min },
  );
}

test('three users: video both ways, view-only watches and cannot publish, screen share, admin mute, chat receipts, leave', async () => {
  const owner = await server.login('owner@example.org', 'Owner');
  const bob = await server.login('bob@example.org', 'Bob');
  const viewer = await server.login('viewer@example.org', 'Viewer');
  const room = await server.api('POST', '/v1/groups', { name: 'Standup', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[0].pin }, bob.token);
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[1].pin }, viewer.token);

  const po = await sdkPage(browser, server, 'Owner');
  const pb = await sdkPage(browser, server, 'Bob');
  const pv = await sdkPage(browser, server, 'Viewer');
  const o = await joinInPage(po, { token: owner.token, gid });
  const b = await joinInPage(pb, { token: bob.token, gid });
  const v = await joinInPage(pv, { token: viewer.token, gid });
  assert.equal(v.permissions.publish, false);
  assert.equal(v.permissions.subscribe, true);
  await publishCamera(po);
  await publishCamera(pb);

  // Every tab decodes the others' cameras, and the count keeps rising.
  for (const [page, keys] of [
    [po, [`${b.address}:0`]],
    [pb, [`${o.address}:0`]],
    [pv, [`${o.address}:0`, `${b.address}:0`]],
  ]) {
    for (const key of keys) {
      const first = await decodedAtLeast(page, key, 10);
      await decodedAtLeast(page, key, first + 20);
    }
  }

  // The view-only member is refused, and the others never see a stream of it.
  const refused = await pv.evaluate(async () => {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    try {
      await window.t.call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
      return null;
    } catch (e) {
      return e.code;
    }
  });
  assert.equal(refused, 'forbidden');
  const viewerStreams = await po.evaluate((a) => window.t.call.participants.get(a)?.streams.length, v.address);
  assert.equal(viewerStreams, 0);

  // Bob shares a "screen" (a canvas: headless Chromium has no desktop to capture) as stream 1.
  await pb.evaluate(async () => {
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
    const track = c.captureStream(20).getVideoTracks()[0];
    window.t.local[1] = await window.t.call.publish(1, { video: track, screen: true });
  });
  for (const page of [po, pv]) await decodedAtLeast(page, `${b.address}:1`, 10);

  // Every tile shows a picture before the screenshots are kept; the viewer's grid settles on
  // three (its tiles appear one by one as the streams arrive, so it is awaited, not sampled).
  for (const [page, want] of [[po, 1], [pv, 3]]) {
    await until(page, (want) => {
      const vs = [...document.querySelectorAll('video[data-key]')];
      return vs.length >= want && vs.every((el) => el.readyState >= 2 && el.videoWidth > 0);
    }, want);
  }
  assert.equal(await pv.evaluate(() => document.querySelectorAll('video[data-key]').length), 3, 'viewer: two cameras and a screen');
  // The screen tile shows Bob's canvas (a saturated colour, not black or blank). A video that
  // has its size may not have painted a frame yet on a busy machine, so this polls (10 s).
  const sample = (key) => {
    const el = document.querySelector(`video[data-key="${key}"]`);
    const c = document.createElement('canvas');
    c.width = el.videoWidth;
    c.height = el.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(el, 0, 0);
    const px = [...g.getImageData(10, 10, 1, 1).data];
    window.__screenPixel = px;
    return Math.max(px[0], px[1], px[2]) - Math.min(px[0], px[1], px[2]) > 60 ? px : null;
  };
  const pixel = await until(pv, sample, `${b.address}:1`, 10_000).catch(() => null);
  const last = await pv.evaluate(() => window.__screenPixel);
  assert.ok(pixel, `the screen tile shows the shared canvas, got rgb ${last}`);
  await screenshot(pv, 'sdk-viewer-grid');
  await screenshot(po, 'sdk-owner-grid');

  // A chat message in the group arrives, and its read receipt returns to the sender.
  const sent = await po.evaluate((gid) => window.t.client.send({ gid, text: 'hello from the call' }), gid);
  const got = await until(pb, () => window.t.messages.find((m) => m.text === 'hello from the call') || false);
  assert.equal(got.gid, gid);
  await pb.evaluate(({ gid, seq }) => window.t.client.read({ gid, seq }), { gid, seq: got.seq });
  const receipt = await until(po, (seq) => window.t.receipts.find((r) => r.status === 3 && r.seq >= seq) || false, sent.seq);
  assert.equal(receipt.by, b.address);

  // The owner (admin) mutes Bob's audio: every tab shows it.
  await po.evaluate((a) => window.t.call.admin('mute', { address: a, audio: true }), b.address);
  for (const page of [po, pb, pv]) {
    await until(page, (a) => window.t.call.participants.get(a)?.admin_muted?.audio === true, b.address);
  }

  // Bob leaves: his tiles go away everywhere.
  await pb.evaluate(() => window.t.call.leave());
  for (const page of [po, pv]) {
    await until(page, (a) => !window.t.call.participants.has(a) && !document.querySelector(`video[data-key^="${a}:"]`), b.address);
  }
  await screenshot(pv, 'sdk-viewer-after-leave');
});
