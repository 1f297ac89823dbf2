// WHIP and WHEP in a cluster (docs/streaming.md, docs/deployment.md "Cluster mode"), with the
// plain fetch() clients of e2e/lib/whip.mjs in real Chromium: three `chorus serve` nodes on one
// PostgreSQL database joined by NATS. The publisher POSTs to node1 and the player to node2; both
// requests are answered by the node that holds the group's call (node0: the least-loaded node,
// ties to the lowest id), whose candidates the answers carry, so the media go to it directly.
// The player decodes the publisher's video; each session's DELETE works through another node.
//
// Needs PostgreSQL and NATS (e2e/lib/cluster.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, until } from '../lib/harness.mjs';
import { Cluster, host } from '../lib/cluster.mjs';
import { WHIP_CLIENT, WHEP_CLIENT } from '../lib/whip.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await Cluster.start(3);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

/** A page of `node`'s origin with the WHIP and WHEP clients and nothing of ours. */
async function plainPage(node, label) {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  await page.goto(node.base + '/healthz');
  await page.setContent(`<!doctype html><html><body><h3>${label}</h3><script>${WHIP_CLIENT}${WHEP_CLIENT}</script></body></html>`);
  return page;
}

/** The UDP port of node `id`'s media address, from `/admin/nodes`. */
async function mediaPort(id) {
  const list = await cluster.adminNodes(0);
  return list.find((n) => n.id === id).media.split(':').pop();
}

test('a WHIP publisher on node1 and a WHEP player on node2 meet in the call held by node0', async () => {
  const [n0, n1, n2] = cluster.nodes;
  const owner = await n1.login('owner@example.org', 'Owner');
  const viewer = await n2.login('viewer@example.org', 'Viewer');
  const room = await n1.api('POST', '/v1/groups', { name: 'Live', room: true }, owner.token);
  const gid = room.group.gid;
  await n2.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[1].pin }, viewer.token);
  const key = await n1.api('POST', `/v1/groups/${gid}/stream_keys`, { label: 'Studio' }, owner.token);

  const pub = await plainPage(n1, 'WHIP');
  const w = await pub.evaluate(({ url, key }) => window.whipPublish(url, key, 'H264').then((w) => ({ session: w.session, answer: w.answer })), {
    url: `${n1.base}/v1/groups/${gid}/whip`,
    key: key.key,
  });
  const list = await cluster.waitNodes(0, 'the call held by one node', (l) => host(l, 1) !== null);
  assert.equal(host(list, 1), 'node0', JSON.stringify(list));
  assert.ok(new URL(w.session).pathname.startsWith('/v1/whip/node0.'), w.session);
  const port = await mediaPort('node0');
  assert.match(w.answer, new RegExp(` ${port} typ host`), 'the answer carries node0\'s candidates');
  assert.doesNotMatch(w.answer, new RegExp(` ${await mediaPort('node1')} typ host`));

  const player = await plainPage(n2, 'WHEP');
  await player.evaluate(({ url, token }) => window.whepPlay(url, token).then(() => true), { url: `${n2.base}/v1/groups/${gid}/whep`, token: viewer.token });
  const decoded = await until(player, async () => {
    const n = await window.decodedIn(window.whep.pc);
    return n >= 30 ? n : false;
  });
  assert.ok(decoded >= 30);
  await cluster.waitNodes(0, 'publisher and player in the one call', (l) => host(l, 2) === 'node0');
  // The player's selected candidate pair ends at node0's media port.
  const used = await player.evaluate(async () => {
    const stats = await window.whep.pc.getStats();
    let port = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        port = String(stats.get(stats.get(s.selectedCandidatePairId).remoteCandidateId).port);
      }
    });
    return port;
  });
  assert.equal(used, port);

  // Each DELETE through a node that did not make the session: answered by node0.
  const del = async (page, url, token) =>
    page.evaluate(async ({ url, token }) => (await fetch(url, { method: 'DELETE', headers: { authorization: 'Bearer ' + token } })).status, { url, token });
  const whepSession = await player.evaluate(() => window.whep.session);
  assert.equal(await del(pub, new URL(new URL(whepSession).pathname, n1.base).href, viewer.token), 200);
  assert.equal(await del(player, new URL(new URL(w.session).pathname, n2.base).href, key.key), 200);
  await cluster.waitNodes(0, 'no call left', (l) => l.every((n) => n.calls === 0));
});
