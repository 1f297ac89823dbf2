// Recording a call of two SDK publishers in real Chromium (issue 13): the admin starts it with
// `call.record('start')`, both pages hear of it, 20 s later it stops; each participant's file
// reaches the group's media library, ffprobe (Debian's ffmpeg, a tool we did not write) reads
// VP8 + Opus, the duration of the recording and audio and video starting together, and the file
// plays in Chromium from a plain <video> with a seek to the middle.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, downloadFile, ffprobe, launchBrowser, sdkPage, until } from '../lib/harness.mjs';

let server;
let browser;
let tmp;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-record-e2e-'));
  server = await Server.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Joins `gid` from a page and publishes its fake camera and microphone; keeps recording events. */
async function publisher(page, token, gid) {
  await page.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 } });
      const t = (window.t = { client, call, recording: [] });
      call.on('recording', (r) => t.recording.push(r));
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      await call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
    },
    { server: server.base, token, gid },
  );
}

test('a call of two SDK publishers is recorded into the library, readable by ffprobe and playable with seeking', async () => {
  const owner = await server.login('owner@example.org', 'Owner');
  const bob = await server.login('bob@example.org', 'Bob');
  const room = await server.api('POST', '/v1/groups', { name: 'Recorded room', room: true }, owner.token);
  const gid = room.group.gid;
  const publisherPin = room.pins[0].pin; // the publisher pin (the second is view-only)
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: publisherPin }, bob.token);

  const po = await sdkPage(browser, server, 'Owner');
  const pb = await sdkPage(browser, server, 'Bob');
  await publisher(po, owner.token, gid);
  await publisher(pb, bob.token, gid);
  // Each sees the other's video before the recording starts.
  const decoding = (page) =>
    until(page, async () => {
      const pc = window.t.call.peerConnections.subscribe;
      let frames = 0;
      (await pc?.getStats())?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
      });
      return frames > 10;
    });
  await decoding(po);
  await decoding(pb);

  // Bob (no call control) may not start it; the owner does; both pages hear of it.
  const refused = await pb.evaluate(() => window.t.call.record('start').then(() => 'started', (e) => e.code));
  assert.equal(refused, 'forbidden');
  const started = await po.evaluate(() => window.t.call.record('start'));
  const startedAt = Date.now();
  assert.equal(started.active, true);
  for (const page of [po, pb]) {
    const ev = await until(page, () => window.t.recording.find((r) => r.active) ?? false);
    assert.equal(ev.by, started.by, 'everyone is told who started it');
    assert.equal(await page.evaluate(() => window.t.call.recording.active), true);
  }

  await new Promise((r) => setTimeout(r, 20_000));
  const stopped = await po.evaluate(() => window.t.call.record('stop'));
  const recorded = (Date.now() - startedAt) / 1000;
  assert.equal(stopped.active, false);
  for (const page of [po, pb]) {
    const ev = await until(page, () => window.t.recording.find((r) => !r.active) ?? false);
    assert.equal(ev.reason, 'stopped');
  }

  // One file per publisher in the group's library.
  let entries = [];
  const deadline = Date.now() + 30_000;
  while (entries.length < 2) {
    assert.ok(Date.now() < deadline, `the recordings never reached the library: ${JSON.stringify(entries)}`);
    await new Promise((r) => setTimeout(r, 300));
    entries = (await server.api('GET', `/v1/groups/${gid}/media`, undefined, bob.token)).media ?? [];
  }
  assert.equal(entries.length, 2, JSON.stringify(entries));
  for (const e of entries) {
    const { file, url } = await downloadFile(server, bob.token, e.id, tmp, 'webm');
    const p = ffprobe(file);
    const codecs = p.info.streams.map((s) => s.codec_name).sort();
    assert.deepEqual(codecs, ['opus', 'vp8'], `${e.name}: ${codecs}`);
    const duration = Number(p.info.format.duration);
    assert.ok(Math.abs(duration - recorded) < 0.5, `${e.name}: ${duration} s in the file, ${recorded} s recorded`);
    assert.ok(Math.abs(p.video[0] - p.audio[0]) < 0.1, `${e.name}: video starts at ${p.video[0]} s, audio at ${p.audio[0]} s`);
    assert.ok(Math.abs(e.duration_ms / 1000 - recorded) < 1, `the library's duration ${e.duration_ms} ms`);

    // Plays in Chromium from its signed URL, and again after a seek to the middle.
    const played = await pb.evaluate(
      async ({ src, mid }) => {
        const v = document.createElement('video');
        Object.assign(v, { muted: true, playsInline: true, src });
        document.body.appendChild(v);
        const wait = (cond, ms) =>
          new Promise((resolve, reject) => {
            const end = Date.now() + ms;
            const tick = () => (cond() ? resolve() : Date.now() > end ? reject(new Error(`waited: ${v.currentTime} ${v.readyState} ${v.error?.message}`)) : setTimeout(tick, 100));
            tick();
          });
        await v.play();
        await wait(() => v.currentTime > 1 && v.videoWidth > 0, 15_000);
        const width = v.videoWidth;
        v.currentTime = mid;
        await wait(() => !v.seeking && v.currentTime > mid + 0.5, 15_000);
        const after = v.currentTime;
        v.remove();
        return { width, after, error: v.error?.message ?? null };
      },
      { src: server.base + url, mid: Math.floor(recorded / 2) },
    );
    assert.equal(played.error, null);
    assert.ok(played.width > 0, JSON.stringify(played));
    assert.ok(played.after > Math.floor(recorded / 2) && played.after < recorded, `playing on from the middle: ${JSON.stringify(played)}`);
  }
});
