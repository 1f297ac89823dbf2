// A group call across a cluster (docs/deployment.md, "Cluster mode"), in real Chromium with the
// SDK: three `chorus serve` nodes on one PostgreSQL database joined by NATS. Ann's page talks to
// node1, Ben's to node2; their call is held by node0 (placement: the least-loaded node, ties to
// the lowest id), so both reach it over NATS for signaling and send their media straight to it.
// node0 is then killed with SIGKILL: both pages are told they lost the call, the SDK joins
// again by itself (no reload), the call is placed on a live node, and the video flows both ways
// again within 10 s of the crash.
//
// Needs PostgreSQL and NATS (e2e/lib/cluster.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, until, treeSdkPage, addDecodedCounter, decodedAtLeast } from '../lib/harness.mjs';
import { Cluster, host } from '../lib/cluster.mjs';

let cluster;
let nodes;
let browser;
let pa;
let pb;
let a;
let b;

/** In the page: connect to `server`, join the call, publish the camera, log the call's events. */
async function joinAndPublish(p, server, { token, gid }) {
  return p.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token, reconnect: { minDelay: 250, maxDelay: 1000 } });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 } });
      const t = (window.t = { client, call, log: [], errors: [] });
      const at = () => Math.round(performance.now());
      call.on('error', (e) => t.errors.push(String(e)));
      call.on('reconnecting', (e) => t.log.push({ ev: 'reconnecting', reason: e.reason, at: at() }));
      call.on('reconnected', (e) => t.log.push({ ev: 'reconnected', republished: e.republished, at: at() }));
      call.on('left', (e) => t.log.push({ ev: 'left', reason: e.reason, at: at() }));
      call.on('track', (e) => {
        if (e.kind !== 'video') return;
        const v = document.createElement('video');
        v.muted = true;
        v.width = 320;
        v.height = 180;
        document.getElementById('tiles').appendChild(v);
        e.stream.attach(v);
      });
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      await call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
      return { address: client.address };
    },
    { server, token, gid },
  );
}

before(async () => {
  cluster = await Cluster.start(3);
  nodes = cluster.nodes;
  browser = await launchBrowser();
  const ua = await nodes[1].login('ann@example.org', 'Ann');
  const ub = await nodes[2].login('ben@example.org', 'Ben');
  const room = await nodes[1].api('POST', '/v1/groups', { name: 'Cluster', room: true }, ua.token);
  const gid = room.group.gid;
  await nodes[2].api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[0].pin }, ub.token);
  pa = await treeSdkPage(browser, nodes[1].base, 'Ann');
  pb = await treeSdkPage(browser, nodes[2].base, 'Ben');
  a = await joinAndPublish(pa, nodes[1].base, { token: ua.token, gid });
  b = await joinAndPublish(pb, nodes[2].base, { token: ub.token, gid });
  for (const p of [pa, pb]) await addDecodedCounter(p);
  await decodedAtLeast(pa, b.address, 10);
  await decodedAtLeast(pb, a.address, 10);
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

test('the node holding the call is killed: both pages rejoin on another node within 10 s, no reload', async () => {
  const list = await cluster.waitNodes(1, 'the call held by one node', (l) => host(l, 2) !== null);
  assert.equal(host(list, 2), 'node0', JSON.stringify(list));
  const before = [await pa.evaluate((x) => window.t.decoded(x), b.address), await pb.evaluate((x) => window.t.decoded(x), a.address)];

  const killed = Date.now();
  nodes[0].child.kill('SIGKILL');
  for (const p of [pa, pb]) {
    const back = await until(p, () => window.t.log.find((e) => e.ev === 'reconnected') || false, undefined, 10_000);
    assert.deepEqual(back.republished, [0]);
    const reasons = await p.evaluate(() => window.t.log.filter((e) => e.ev === 'reconnecting').map((e) => e.reason));
    assert.deepEqual(reasons, ['lost']);
  }
  // New subscribe connections: their frame counts start again from 0.
  await decodedAtLeast(pa, b.address, 15, Math.max(1000, 10_000 - (Date.now() - killed)));
  await decodedAtLeast(pb, a.address, 15, Math.max(1000, 10_000 - (Date.now() - killed)));
  const took = Date.now() - killed;
  console.log(`video back both ways ${took} ms after SIGKILL (decoded before: ${before})`);
  assert.ok(took < 10_000, `${took} ms`);
  const after = await cluster.waitNodes(1, 'the call on a live node', (l) => l.length === 2 && host(l, 2) !== null);
  assert.notEqual(host(after, 2), 'node0');
  for (const p of [pa, pb]) {
    assert.deepEqual(await p.evaluate(() => [window.t.call.state, window.t.client.state, window.t.errors]), ['joined', 'online', []]);
  }
});
