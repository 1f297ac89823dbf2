// A group call across a cluster (docs/deployment.md, "Cluster mode"), in real Chromium with the
// SDK: three `chorus serve` nodes on one PostgreSQL database joined by NATS. Ann's page talks to
// node1, Ben's to node2; their call is held by node0 (placement: the least-loaded node, ties to
// the lowest id), so both reach it over NATS for signaling and send their media straight to it.
// node0 is then killed with SIGKILL: both pages are told they lost the call, the SDK joins
// again by itself (no reload), the call is placed on a live node, and the video flows both ways
// again within 10 s of the crash.
//
// Needs PostgreSQL at 127.0.0.1:5432 (trust; CHORUS_TEST_PG overrides the URL without its
// database) with `psql`, and NATS at 127.0.0.1:4222 (CHORUS_TEST_NATS).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Server, launchBrowser, until, treeSdkPage, addDecodedCounter, decodedAtLeast } from '../lib/harness.mjs';

const PG = process.env.CHORUS_TEST_PG || 'postgres://postgres@127.0.0.1:5432';
const NATS = process.env.CHORUS_TEST_NATS || 'nats://127.0.0.1:4222';
const ADMIN = 'e2e-cluster-admin-token-0123456789';
const tag = `e2e_${process.pid}_${Date.now() % 1_000_000}`;
const database = `chorus_${tag}`;

let nodes = [];
let browser;
let pa;
let pb;
let a;
let b;

function psql(sql) {
  execFileSync('psql', [`${PG}/test`, '-v', 'ON_ERROR_STOP=1', '-q', '-c', sql], { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function adminNodes(node) {
  const r = await fetch(node.base + '/admin/nodes', { headers: { authorization: `Bearer ${ADMIN}` } });
  return r.json();
}

/** Waits until node `i` lists nodes that `ok` accepts; returns the list. */
async function waitNodes(i, what, ok, timeout = 10_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const list = await adminNodes(nodes[i]);
    if (ok(list)) return list;
    if (Date.now() > end) throw new Error(`node${i} never showed ${what}: ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The id of the one node holding a call of `n`, the others holding none. */
function host(list, n) {
  const hosts = list.filter((x) => x.calls === 1);
  return hosts.length === 1 && hosts[0].participants === n && list.every((x) => x.calls <= 1) ? hosts[0].id : null;
}

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
  psql(`CREATE DATABASE ${database}`);
  const env = (i) => ({
    CHORUS_DATABASE: `${PG}/${database}`,
    CHORUS_NATS: NATS,
    CHORUS_NATS_PREFIX: tag,
    CHORUS_NODE_ID: `node${i}`,
    CHORUS_ADMIN_TOKEN: ADMIN,
    CHORUS_PIN_KEY: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff',
  });
  // One after the other: the first creates the schema.
  for (let i = 0; i < 3; i++) nodes.push(await Server.start(env(i)));
  for (let i = 0; i < 3; i++) await waitNodes(i, 'three nodes', (l) => l.length === 3);
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
  for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) await n.stop();
  try {
    psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  } catch (e) {
    console.error('dropping the test database:', e.message);
  }
});

test('the node holding the call is killed: both pages rejoin on another node within 10 s, no reload', async () => {
  const list = await waitNodes(1, 'the call held by one node', (l) => host(l, 2) !== null);
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
  const after = await waitNodes(1, 'the call on a live node', (l) => l.length === 2 && host(l, 2) !== null);
  assert.notEqual(host(after, 2), 'node0');
  for (const p of [pa, pb]) {
    assert.deepEqual(await p.evaluate(() => [window.t.call.state, window.t.client.state, window.t.errors]), ['joined', 'online', []]);
  }
});
