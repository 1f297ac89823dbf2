// WHIP and WHEP with plain fetch() clients in real Chromium (not our SDK) against a real
// `chorus serve`: a WHIP publisher (H.264 + Opus with a stream key, no trickle, as OBS does)
// reaches SDK viewers, who decode its frames, and keeps playing across an ICE restart made
// through PATCH; a WHEP player decodes a camera published by the SDK.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, downloadFile, ffprobe, launchBrowser, sdkPage, until } from '../lib/harness.mjs';
import { WHIP_CLIENT, WHEP_CLIENT } from '../lib/whip.mjs';

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

async function plainPage(label) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  await page.goto(server.base + '/healthz');
  await page.setContent(`<!doctype html><html><body><h3>${label}</h3><script>${WHIP_CLIENT}${WHEP_CLIENT}</script></body></html>`);
  return page;
}

/** An SDK viewer in the call: decoded video frames per publisher address. */
async function sdkViewer(label, token, gid) {
  const page = await sdkPage(browser, server, label);
  await page.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 } });
      const t = (window.t = { call, keys: {}, codecs: {} });
      call.on('track', (e) => {
        t.keys[e.track.id] = e.publisher;
        if (e.kind !== 'video') return;
        const v = document.createElement('video');
        v.autoplay = v.muted = v.playsInline = true;
        v.srcObject = new MediaStream([e.track]);
        document.getElementById('tiles').appendChild(v);
        e.stream.attach(v);
      });
      t.decoded = async () => {
        const out = {};
        const pc = call.peerConnections.subscribe;
        if (!pc) return out;
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
          const who = t.keys[s.trackIdentifier];
          if (!who) return;
          out[who] = Math.max(out[who] || 0, s.framesDecoded || 0);
          const codec = stats.get(s.codecId);
          if (codec) t.codecs[who] = codec.mimeType;
        });
        return out;
      };
    },
    { server: server.base, token, gid },
  );
  return page;
}

async function framesFrom(page, who, min) {
  return until(
    page,
    async ({ who, min }) => {
      const d = await window.t.decoded();
      const at = Object.entries(d).find(([k]) => k.startsWith(who));
      return at && at[1] >= min ? at[1] : false;
    },
    { who, min },
  );
}

test('WHIP from a plain fetch() client (H.264 + Opus, stream key) reaches SDK viewers, and an ICE restart through PATCH keeps it playing', async () => {
  const owner = await server.login('owner@example.org', 'Owner');
  const viewer = await server.login('viewer@example.org', 'Viewer');
  const room = await server.api('POST', '/v1/groups', { name: 'Live', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[1].pin }, viewer.token);
  const key = await server.api('POST', `/v1/groups/${gid}/stream_keys`, { label: 'Studio' }, owner.token);

  const pv = await sdkViewer('Viewer', viewer.token, gid);
  const pub = await plainPage('WHIP');
  const h264 = await pub.evaluate(() => RTCRtpSender.getCapabilities('video').codecs.some((c) => c.mimeType === 'video/H264'));
  assert.ok(h264, 'this Chromium encodes H.264');
  await pub.evaluate(({ url, key }) => window.whipPublish(url, key, 'H264').then(() => true), {
    url: `${server.base}/v1/groups/${gid}/whip`,
    key: key.key,
  });
  const who = `key${key.id}~whip`;
  const first = await framesFrom(pv, who, 30);
  const codec = await pv.evaluate((who) => Object.entries(window.t.codecs).find(([k]) => k.startsWith(who))?.[1], who);
  assert.equal(codec, 'video/H264', 'the viewer decodes the H.264 the publisher sends');

  // ICE restart: new credentials on both sides, a new ETag, and the frames keep coming.
  const before = await pub.evaluate(() => window.whip.etag);
  const restarted = await pub.evaluate(() => window.whipRestart());
  assert.notEqual(restarted.etag, before);
  assert.equal(restarted.etag, `"${restarted.ufrag}"`);
  await until(
    pub,
    async (local) => {
      const pc = window.whip.pc;
      let ok = false;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'transport' && s.iceState === 'connected' && s.iceLocalUsernameFragment === local) ok = true;
      });
      return ok && pc.connectionState === 'connected';
    },
    restarted.local,
  );
  const after = await framesFrom(pv, who, first + 30);
  await framesFrom(pv, who, after + 60);

  // The owner records the live stream for 8 s: H.264 cannot go into WebM, so the library gets a
  // fragmented MP4 that ffprobe reads as H.264 + Opus, as long as the recording, A/V together.
  const recording = `/v1/groups/${gid}/call/recording`;
  await server.api('POST', recording, {}, owner.token);
  const startedAt = Date.now();
  await new Promise((r) => setTimeout(r, 8_000));
  await server.api('DELETE', recording, undefined, owner.token);
  const recorded = (Date.now() - startedAt) / 1000;
  let entries = [];
  const deadline = Date.now() + 30_000;
  while (entries.length < 1) {
    assert.ok(Date.now() < deadline, 'the recording never reached the library');
    await new Promise((r) => setTimeout(r, 300));
    entries = (await server.api('GET', `/v1/groups/${gid}/media`, undefined, owner.token)).media ?? [];
  }
  assert.equal(entries.length, 1, JSON.stringify(entries));
  assert.ok(entries[0].name.endsWith('.mp4'), entries[0].name);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-whip-record-'));
  try {
    const { file } = await downloadFile(server, owner.token, entries[0].id, tmp, 'mp4');
    const p = ffprobe(file);
    assert.deepEqual(p.info.streams.map((s) => s.codec_name).sort(), ['h264', 'opus']);
    const duration = Number(p.info.format.duration);
    assert.ok(Math.abs(duration - recorded) < 0.5, `${duration} s in the file, ${recorded} s recorded`);
    assert.ok(Math.abs(p.video[0] - p.audio[0]) < 0.1, `video starts at ${p.video[0]} s, audio at ${p.audio[0]} s`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  // DELETE ends it: the viewer's call loses the participant.
  await pub.evaluate(async () => {
    const w = window.whip;
    const r = await fetch(w.session, { method: 'DELETE', headers: { authorization: 'Bearer ' + w.key } });
    if (r.status !== 200) throw new Error('DELETE ' + r.status);
  });
  await until(pv, (who) => ![...window.t.call.participants.keys()].some((a) => a.startsWith(who)), who);
});

test('a publisher that vanishes ends its WHIP stream for viewers within the peer timeout', async () => {
  const owner = await server.login('owner2@example.org', 'Owner');
  const viewer = await server.login('viewer2@example.org', 'Viewer');
  const room = await server.api('POST', '/v1/groups', { name: 'Live 2', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[1].pin }, viewer.token);
  const pv = await sdkViewer('Viewer', viewer.token, gid);
  const pub = await plainPage('WHIP');
  await pub.evaluate(({ url, token }) => window.whipPublish(url, token, 'VP8').then(() => true), {
    url: `${server.base}/v1/groups/${gid}/whip`,
    token: owner.token,
  });
  await framesFrom(pv, `${owner.user.address}~whip`, 10);
  // The tab goes away without a DELETE.
  await pub.context().close();
  const gone = Date.now();
  await until(pv, (who) => ![...window.t.call.participants.keys()].some((a) => a.startsWith(who)), `${owner.user.address}~whip`, 40_000);
  console.log(`vanished WHIP publisher left the call after ${Date.now() - gone} ms`);
});

test('a simulcast WHIP publish (VP8, three layers) is forwarded to an SDK viewer', async () => {
  const owner = await server.login('owner4@example.org', 'Owner');
  const viewer = await server.login('viewer4@example.org', 'Viewer');
  const room = await server.api('POST', '/v1/groups', { name: 'Live 4', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[1].pin }, viewer.token);
  const pv = await sdkViewer('Viewer', viewer.token, gid);
  const pub = await plainPage('WHIP simulcast');
  await pub.evaluate(({ url, token }) => window.whipPublish(url, token, 'VP8', true).then(() => true), {
    url: `${server.base}/v1/groups/${gid}/whip`,
    token: owner.token,
  });
  assert.match(await pub.evaluate(() => window.whip.pc.localDescription.sdp), /a=simulcast:send q;h;f/);
  const who = `${owner.user.address}~whip`;
  const layers = await until(pv, (who) => {
    const p = [...window.t.call.participants.values()].find((p) => p.address.startsWith(who));
    return p?.streams[0]?.layers;
  }, who);
  assert.equal(layers, 3);
  const first = await framesFrom(pv, who, 30);
  await framesFrom(pv, who, first + 30);
});

/** A page whose SDK joins `gid`'s call with `token` and publishes a 360p camera (`window.call`). */
async function cameraPublisher(token, gid) {
  const page = await sdkPage(browser, server, 'Owner');
  await page.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      const call = await client.joinCall(gid);
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      await call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
      window.call = call;
    },
    { server: server.base, token, gid },
  );
  return page;
}

test('a WHEP player (plain fetch(), 406 counter-offer) decodes a camera published by the SDK', async () => {
  const owner = await server.login('owner3@example.org', 'Owner');
  const viewer = await server.login('viewer3@example.org', 'Viewer');
  const room = await server.api('POST', '/v1/groups', { name: 'Live 3', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[1].pin }, viewer.token);
  const url = `${server.base}/v1/groups/${gid}/whep`;

  // Nothing live yet: 409 with Retry-After.
  const idle = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${viewer.token}` }, body: 'v=0\r\n' });
  assert.equal(idle.status, 409);
  assert.ok(Number(idle.headers.get('retry-after')) > 0);

  await cameraPublisher(owner.token, gid);
  const player = await plainPage('WHEP');
  await player.evaluate(({ url, token }) => window.whepPlay(url, token).then(() => true), { url, token: viewer.token });
  const first = await until(player, async () => {
    const n = await window.decodedIn(window.whep.pc);
    return n >= 30 ? n : false;
  });
  await until(player, async (first) => {
    const n = await window.decodedIn(window.whep.pc);
    return n >= first + 30 ? n : false;
  }, first);
  const stopped = await player.evaluate(async () => {
    const w = window.whep;
    return (await fetch(w.session, { method: 'DELETE', headers: { authorization: 'Bearer ' + w.token } })).status;
  });
  assert.equal(stopped, 200);
});

test('public viewing: a WHEP player without an account decodes a live room host; it is refused once the owner turns public viewing off', async () => {
  const owner = await server.login('owner4@example.org', 'Owner');
  const room = await server.api('POST', '/v1/groups', { name: 'Live 4', room: true, live: true, public_viewing: true }, owner.token);
  const gid = room.group.gid;
  assert.equal(room.group.public_viewing, true);
  const url = `${server.base}/v1/groups/${gid}/whep`;
  const po = await cameraPublisher(owner.token, gid);
  const player = await plainPage('Public WHEP');
  await player.evaluate((url) => window.whepPlay(url, null).then(() => true), url);
  const first = await until(player, async () => {
    const n = await window.decodedIn(window.whep.pc);
    return n >= 30 ? n : false;
  });
  await until(player, async (first) => {
    const n = await window.decodedIn(window.whep.pc);
    return n >= first + 30 ? n : false;
  }, first);
  // In a live room the public viewer is audience: not in the host's roster.
  assert.equal(await po.evaluate(() => [...window.call.participants.keys()].some((a) => a.startsWith('public~'))), false);

  await server.api('PATCH', `/v1/groups/${gid}`, { public_viewing: false }, owner.token);
  const refused = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
  assert.equal(refused.status, 401);
  // The viewer already watching is let go: its peer connection stops receiving.
  await until(player, async () => {
    const a = await window.decodedIn(window.whep.pc);
    await new Promise((r) => setTimeout(r, 1500));
    return (await window.decodedIn(window.whep.pc)) === a;
  });
});
