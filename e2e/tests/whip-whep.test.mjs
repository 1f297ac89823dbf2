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

/** The WHIP client: ~50 lines of fetch() and RTCPeerConnection, run in the page. */
const WHIP_CLIENT = `
window.gathered = (pc) => new Promise((r) => {
  if (pc.iceGatheringState === 'complete') return r();
  pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
});
window.whipPublish = async (url, key, codec, simulcast) => {
  const pc = new RTCPeerConnection();
  const size = simulcast ? { width: 1280, height: 720 } : { width: 640, height: 360 };
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: size });
  pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
  const sendEncodings = simulcast ? [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }] : undefined;
  const video = pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly', sendEncodings });
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  video.setCodecPreferences([...codecs.filter((c) => c.mimeType === 'video/' + codec), ...codecs.filter((c) => c.mimeType !== 'video/' + codec)]);
  await pc.setLocalDescription(await pc.createOffer());
  await window.gathered(pc); // no trickle: every candidate in the offer, as OBS does
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: 'Bearer ' + key }, body: pc.localDescription.sdp });
  if (r.status !== 201) throw new Error('WHIP POST: ' + r.status + ' ' + (await r.text()));
  const session = new URL(r.headers.get('location'), url).href;
  const etag = r.headers.get('etag');
  const answer = await r.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return (window.whip = { pc, session, etag, answer, key });
};
/** ICE restart (RFC 9725 section 4.4.1.2): new local credentials, PATCHed as a fragment. */
window.whipRestart = async () => {
  const w = window.whip;
  w.pc.restartIce();
  await w.pc.setLocalDescription(await w.pc.createOffer());
  await window.gathered(w.pc);
  const sdp = w.pc.localDescription.sdp;
  const line = (name) => sdp.split('\\r\\n').find((l) => l.startsWith('a=' + name + ':'));
  let frag = line('ice-ufrag') + '\\r\\n' + line('ice-pwd') + '\\r\\n';
  for (const m of sdp.split('\\r\\nm=').slice(1)) {
    const ls = m.split('\\r\\n');
    frag += 'm=' + ls[0] + '\\r\\n' + ls.filter((l) => l.startsWith('a=mid:') || l.startsWith('a=candidate:')).join('\\r\\n') + '\\r\\n';
  }
  const r = await fetch(w.session, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '*', authorization: 'Bearer ' + w.key }, body: frag });
  if (r.status !== 200) throw new Error('WHIP PATCH: ' + r.status + ' ' + (await r.text()));
  const answerFrag = await r.text();
  const get = (name) => answerFrag.split('\\r\\n').find((l) => l.startsWith('a=' + name + ':'));
  const answer = w.answer.replace(/a=ice-ufrag:.*\\r\\n/g, get('ice-ufrag') + '\\r\\n').replace(/a=ice-pwd:.*\\r\\n/g, get('ice-pwd') + '\\r\\n');
  await w.pc.setRemoteDescription({ type: 'answer', sdp: answer });
  w.answer = answer;
  w.etag = r.headers.get('etag');
  return { etag: w.etag, ufrag: get('ice-ufrag').slice('a=ice-ufrag:'.length), local: line('ice-ufrag').slice('a=ice-ufrag:'.length) };
};
`;

/** The WHEP player, the draft's counter-offer form: POST an offer, get 406 + the server's
 * offer, PATCH the answer. */
const WHEP_CLIENT = `
window.whepPlay = async (url, token) => {
  // No token: a group with public viewing on (its session's URL is then its only key).
  const auth = token ? { authorization: 'Bearer ' + token } : {};
  const probe = new RTCPeerConnection();
  probe.addTransceiver('audio', { direction: 'recvonly' });
  probe.addTransceiver('video', { direction: 'recvonly' });
  await probe.setLocalDescription(await probe.createOffer());
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', ...auth }, body: probe.localDescription.sdp });
  probe.close();
  if (r.status !== 406) throw new Error('WHEP POST: ' + r.status + ' ' + (await r.text()));
  const session = new URL(r.headers.get('location'), url).href;
  const pc = new RTCPeerConnection();
  const v = document.createElement('video');
  v.autoplay = v.muted = v.playsInline = true;
  document.body.appendChild(v);
  pc.ontrack = (e) => { if (e.track.kind === 'video') v.srcObject = new MediaStream([e.track]); };
  await pc.setRemoteDescription({ type: 'offer', sdp: await r.text() });
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((res) => (pc.iceGatheringState === 'complete' ? res() : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && res())));
  const p = await fetch(session, { method: 'PATCH', headers: { 'content-type': 'application/sdp', 'if-match': r.headers.get('etag'), ...auth }, body: pc.localDescription.sdp });
  if (p.status !== 204) throw new Error('WHEP PATCH: ' + p.status + ' ' + (await p.text()));
  return (window.whep = { pc, session, token });
};
window.decodedIn = async (pc) => {
  let n = 0;
  (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = Math.max(n, s.framesDecoded || 0); });
  return n;
};
`;

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
