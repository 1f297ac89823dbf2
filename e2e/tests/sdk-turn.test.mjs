// The embedded TURN relay in real Chromium: a server with `turn_udp_port` hands TURN credentials
// out in `call_joined`, the SDK gives them to its peer connections, and two users with
// `iceTransportPolicy: "relay"` (no direct path allowed) still see each other's camera — through
// the relay, as the selected candidate pairs show.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launchBrowser, sdkPage } from '../lib/harness.mjs';

let server;
let browser;

before(async () => {
  server = await Server.start({ CHORUS_TURN_UDP_PORT: '0' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Runs `fn` (async, in the page) every 250 ms until it returns a truthy value; returns it. */
async function poll(page, fn, arg, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function joinRelayed(page, { token, gid }) {
  return page.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 }, rtcConfig: { iceTransportPolicy: 'relay' } });
      const t = (window.t = { client, call });
      t.decoded = async () => {
        const pc = call.peerConnections.subscribe;
        let n = 0;
        if (pc) (await pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') n = Math.max(n, s.framesDecoded || 0);
        });
        return n;
      };
      // Candidate types of the selected pair of a connection: [local, remote].
      t.selected = async (which) => {
        const pc = call.peerConnections[which];
        const stats = await pc.getStats();
        let pair = null;
        stats.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
        });
        if (!pair) return false;
        return [stats.get(pair.localCandidateId)?.candidateType, stats.get(pair.remoteCandidateId)?.candidateType];
      };
      return { address: client.address };
    },
    { server: server.base, token, gid },
  );
}

test('relay-only peers see each other through the embedded TURN relay', async () => {
  const owner = await server.login('owner@example.org', 'Owner');
  const bob = await server.login('bob@example.org', 'Bob');
  const room = await server.api('POST', '/v1/groups', { name: 'Relay', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[0].pin }, bob.token);

  const po = await sdkPage(browser, server, 'Owner');
  const pb = await sdkPage(browser, server, 'Bob');
  await joinRelayed(po, { token: owner.token, gid });
  await joinRelayed(pb, { token: bob.token, gid });
  for (const page of [po, pb]) {
    await page.evaluate(async () => {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      await window.t.call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
    });
  }
  for (const page of [po, pb]) {
    const first = await poll(page, async () => {
      const n = await window.t.decoded();
      return n >= 10 ? n : false;
    }, undefined, '10 decoded frames');
    await poll(page, async (first) => (await window.t.decoded()) >= first + 20, first, '20 more decoded frames');
    for (const which of ['publish', 'subscribe']) {
      const types = await poll(page, (w) => window.t.selected(w), which, `a selected ${which} pair`);
      assert.equal(types[0], 'relay', `${which}: the local side of the selected pair is a relay candidate (${types})`);
    }
  }
});
