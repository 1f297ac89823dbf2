// The embedded TURN relay in real Chromium: a server with `turn_udp_port` (or `turn_tls_port`)
// hands TURN credentials out in `call_joined`, the SDK gives them to its peer connections, and two
// users with `iceTransportPolicy: "relay"` (no direct path allowed) still see each other's camera —
// through the relay, over UDP and over TLS, as the selected candidate pairs show.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, launchBrowser, sdkPage } from '../lib/harness.mjs';

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** A self-signed certificate for 127.0.0.1 made by Debian's openssl: [cert, key] paths. */
function certificate() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-turn-tls-'));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return [cert, key];
}

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

async function joinRelayed(page, server, { token, gid }) {
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
      // The selected pair of a connection: [local type, remote type, local relay protocol].
      t.selected = async (which) => {
        const pc = call.peerConnections[which];
        const stats = await pc.getStats();
        let pair = null;
        stats.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
        });
        if (!pair) return false;
        const local = stats.get(pair.localCandidateId);
        return [local?.candidateType, stats.get(pair.remoteCandidateId)?.candidateType, local?.relayProtocol];
      };
      return { address: client.address };
    },
    { server: server.base, token, gid },
  );
}

/** Two relay-only users in a call on `server`; returns when both decode each other's camera
 * through relay candidates of `protocol` (udp or tls). */
async function relayedCall(server, browser, protocol) {
  const owner = await server.login('owner@example.org', 'Owner');
  const bob = await server.login('bob@example.org', 'Bob');
  const room = await server.api('POST', '/v1/groups', { name: 'Relay', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[0].pin }, bob.token);

  const po = await sdkPage(browser, server, 'Owner');
  const pb = await sdkPage(browser, server, 'Bob');
  await joinRelayed(po, server, { token: owner.token, gid });
  await joinRelayed(pb, server, { token: bob.token, gid });
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
      const pair = await poll(page, (w) => window.t.selected(w), which, `a selected ${which} pair`);
      assert.equal(pair[0], 'relay', `${which}: the local side of the selected pair is a relay candidate (${pair})`);
      assert.equal(pair[2], protocol, `${which}: the relay is reached over ${protocol} (${pair})`);
    }
  }
}

test('relay-only peers see each other through the embedded TURN relay over UDP', async () => {
  const server = await Server.start({ CHORUS_TURN_UDP_PORT: '0' });
  cleanup.push(() => server.stop());
  const browser = await launchBrowser();
  cleanup.push(() => browser.close());
  await relayedCall(server, browser, 'udp');
});

test('relay-only peers see each other through TURN over TLS, the only transport offered', async () => {
  const [cert, key] = certificate();
  const server = await Server.start({ CHORUS_TURN_TLS_PORT: '0', CHORUS_TURN_TLS_CERT: cert, CHORUS_TURN_TLS_KEY: key });
  cleanup.push(() => server.stop());
  // The test certificate is self-signed: Chromium is told not to check it (a real deployment
  // uses a certificate for `turn_host`).
  const browser = await launchBrowser({ args: ['--ignore-certificate-errors'] });
  cleanup.push(() => browser.close());
  await relayedCall(server, browser, 'tls');
});
