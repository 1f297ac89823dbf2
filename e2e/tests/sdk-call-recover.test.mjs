// Network trouble in a group call (docs/protocol.md §15.10), in real Chromium against a real
// `chorus serve`: two users publish camera and microphone; (a) an ICE restart (`restartIce()`)
// renews the ICE credentials of both connections while the video keeps coming; (b) one page's
// WebSocket drops, the server takes it out of the call (`lost`), and the SDK joins again by
// itself: it republishes its camera and resubscribes, and the video flows both ways again.
//
// The page loads the SDK bundle of this tree (sdk/dist/chorus.js, the file chorus serves at
// /sdk/chorus.js once built), so the test runs the SDK as committed even against a server binary
// built before the bundle changed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launchBrowser, until, screenshot, treeSdkPage, addDecodedCounter, decodedAtLeast } from '../lib/harness.mjs';

let server;
let browser;
let pa;
let pb;
let a;
let b;

/** In the page: connect (reconnecting within 1 s), join, publish the camera, log call events. */
async function joinAndPublish(p, { token, gid }) {
  return p.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token, reconnect: { minDelay: 250, maxDelay: 1000 } });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 } });
      const t = (window.t = { client, call, log: [], errors: [], states: [] });
      const at = () => Math.round(performance.now());
      client.on('connection', (c) => t.states.push({ state: c.state, at: at() }));
      call.on('error', (e) => t.errors.push(String(e)));
      call.on('reconnecting', (e) => t.log.push({ ev: 'reconnecting', reason: e.reason, at: at() }));
      call.on('reconnected', (e) => t.log.push({ ev: 'reconnected', republished: e.republished, at: at() }));
      call.on('left', (e) => t.log.push({ ev: 'left', reason: e.reason, at: at() }));
      call.on('participant-left', (e) => t.log.push({ ev: 'participant-left', address: e.participant.address, reason: e.reason, at: at() }));
      call.on('participant-joined', (p) => t.log.push({ ev: 'participant-joined', address: p.address, at: at() }));
      call.on('stream-published', (s) => t.log.push({ ev: 'stream-published', address: s.address, sid: s.sid, at: at() }));
      call.on('ice-restart', (e) => t.log.push({ ev: 'ice-restart', automatic: e.automatic, at: at() }));
      call.on('track', (e) => {
        if (e.kind !== 'video') return;
        const v = document.createElement('video');
        v.muted = true;
        v.width = 320;
        v.height = 180;
        v.dataset.key = `${e.publisher}:${e.sid}`;
        document.getElementById('tiles').appendChild(v);
        e.stream.attach(v);
      });
      call.on('track-removed', (e) => {
        if (e.kind === 'video') document.querySelectorAll(`video[data-key="${e.publisher}:${e.sid}"]`).forEach((v) => v.remove());
      });
      t.ufrag = (d) => /a=ice-ufrag:(\S+)/.exec(d?.sdp || '')?.[1] || null;
      t.ufrags = () => {
        const { publish, subscribe } = call.peerConnections;
        return {
          pubLocal: t.ufrag(publish?.localDescription),
          pubRemote: t.ufrag(publish?.remoteDescription),
          subRemote: t.ufrag(subscribe?.remoteDescription),
          subLocal: t.ufrag(subscribe?.localDescription),
        };
      };
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      t.media = media;
      t.local = await call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
      return { address: client.address };
    },
    { server: server.base, token, gid },
  );
}

before(async () => {
  server = await Server.start();
  browser = await launchBrowser();
  const ua = await server.login('ann@example.org', 'Ann');
  const ub = await server.login('ben@example.org', 'Ben');
  const room = await server.api('POST', '/v1/groups', { name: 'Recover', room: true }, ua.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[0].pin }, ub.token);
  pa = await treeSdkPage(browser, server.base, 'Ann');
  pb = await treeSdkPage(browser, server.base, 'Ben');
  a = await joinAndPublish(pa, { token: ua.token, gid });
  b = await joinAndPublish(pb, { token: ub.token, gid });
  for (const p of [pa, pb]) await addDecodedCounter(p);
  await decodedAtLeast(pa, b.address, 10);
  await decodedAtLeast(pb, a.address, 10);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('restartIce(): new ICE credentials on both connections, the video keeps arriving', async () => {
  const before = await pa.evaluate(() => window.t.ufrags());
  for (const k of ['pubLocal', 'pubRemote', 'subRemote', 'subLocal']) assert.ok(before[k], `${k} ufrag before: ${JSON.stringify(before)}`);

  await pa.evaluate(() => window.t.call.restartIce());
  // The server's new subscribe offer (a call_offer) follows the call_sdp answer; once answered,
  // every ufrag of both connections is new.
  const afterRestart = await until(
    pa,
    (before) => {
      const u = window.t.ufrags();
      const sub = window.t.call.peerConnections.subscribe;
      const ok = sub.signalingState === 'stable' && Object.keys(before).every((k) => u[k] && u[k] !== before[k]);
      return ok ? u : false;
    },
    before,
    10_000,
  );
  console.log('ufrags before', before, 'after', afterRestart);
  const log = await pa.evaluate(() => window.t.log.filter((e) => e.ev === 'ice-restart'));
  assert.deepEqual(log.map((e) => e.automatic), [false]);

  // Video keeps coming both ways within 3 s (Ann's receive side and Ben's, from Ann's restarted
  // publish connection), and Ann's connections are connected again.
  const [da, db] = [await pa.evaluate((x) => window.t.decoded(x), b.address), await pb.evaluate((x) => window.t.decoded(x), a.address)];
  await decodedAtLeast(pa, b.address, da + 15, 3_000);
  await decodedAtLeast(pb, a.address, db + 15, 3_000);
  const states = await pa.evaluate(() => {
    const { publish, subscribe } = window.t.call.peerConnections;
    return [publish.iceConnectionState, subscribe.iceConnectionState];
  });
  for (const s of states) assert.ok(s === 'connected' || s === 'completed', `ICE state ${states}`);
  assert.deepEqual(await pa.evaluate(() => window.t.errors), []);
});

test('a dropped WebSocket: the SDK rejoins by itself, republishes and resubscribes', async () => {
  const remoteBefore = await pb.evaluate((x) => {
    window.t.rsAnn = window.t.call.stream(x, 0);
    window.t.localBefore = window.t.local;
    return window.t.rsAnn.subscription; // its height: what the tile's size asked for (attach)
  }, a.address);
  assert.ok(remoteBefore && remoteBefore.audio && remoteBefore.video && remoteBefore.height > 0, JSON.stringify(remoteBefore));
  const aLogStart = await pa.evaluate(() => window.t.log.length);

  // Ben's network goes away. Chromium's offline emulation blocks new connections (the reconnects
  // fail until it ends) but leaves an open WebSocket alone, so the SDK's hook closes that one as a
  // broken network would.
  await pb.context().setOffline(true);
  await pb.evaluate(() => window.t.client._dropConnection());
  const dropped = await until(pb, () => window.t.states.find((s) => s.state === 'offline') || false, undefined, 5_000);
  console.log('websocket dropped:', dropped);
  await until(pb, () => window.t.call.state === 'reconnecting', undefined, 5_000);
  // The server took Ben out of the call: Ann sees him leave, reason lost.
  const gone = await until(
    pa,
    ({ addr, from }) => window.t.log.slice(from).find((e) => e.ev === 'participant-left' && e.address === addr) || false,
    { addr: b.address, from: aLogStart },
    15_000,
  );
  assert.equal(gone.reason, 'lost');
  await new Promise((r) => setTimeout(r, 2000));
  // Still offline: the reconnects failed, the call waits.
  assert.deepEqual(await pb.evaluate(() => [window.t.client.state, window.t.call.state]), ['offline', 'reconnecting']);

  await pb.context().setOffline(false);
  const back = Date.now();
  // Ben is back in the call with the same camera stream (sid 0); Ann sees him join and publish.
  const rejoined = await until(pb, () => window.t.log.find((e) => e.ev === 'reconnected') || false, undefined, 20_000);
  assert.deepEqual(rejoined.republished, [0]);
  await until(
    pa,
    ({ addr, from }) => {
      const l = window.t.log.slice(from);
      return l.some((e) => e.ev === 'participant-joined' && e.address === addr) && l.some((e) => e.ev === 'stream-published' && e.address === addr && e.sid === 0);
    },
    { addr: b.address, from: aLogStart },
    10_000,
  );
  // Both receive each other's video again, and it keeps coming.
  const nA = await decodedAtLeast(pa, b.address, 10, 10_000);
  const nB = await decodedAtLeast(pb, a.address, 10, 10_000);
  const took = Date.now() - back;
  console.log(`video both ways again ${took} ms after the network returned`);
  assert.ok(took < 8_000, `video both ways again only ${took} ms after the network returned`);
  await decodedAtLeast(pa, b.address, nA + 20, 5_000);
  await decodedAtLeast(pb, a.address, nB + 20, 5_000);

  // Ben's app objects survived: the same RemoteStream of Ann's camera (subscribed again with the
  // same height, on a new live track), the same LocalStream with the same tracks.
  const objs = await pb.evaluate((x) => {
    const t = window.t;
    const rs = t.call.stream(x, 0);
    return {
      sameRemote: rs === t.rsAnn,
      subscription: rs.subscription,
      track: rs.tracks.video?.readyState,
      sameLocal: t.call.published.get(0) === t.localBefore,
      sameTrack: t.call.published.get(0).videoTrack === t.media.getVideoTracks()[0],
      sender: t.call.published.get(0).videoTransceiver.sender.track === t.media.getVideoTracks()[0],
      state: t.call.state,
      log: t.log.filter((e) => ['reconnecting', 'reconnected', 'left'].includes(e.ev)).map((e) => e.ev + (e.reason ? `:${e.reason}` : '')),
    };
  }, a.address);
  assert.deepEqual(objs, {
    sameRemote: true,
    subscription: remoteBefore,
    track: 'live',
    sameLocal: true,
    sameTrack: true,
    sender: true,
    state: 'joined',
    log: ['reconnecting:lost', 'reconnected'],
  });
  await screenshot(pa, 'sdk-recover-ann');
  await screenshot(pb, 'sdk-recover-ben');
});
