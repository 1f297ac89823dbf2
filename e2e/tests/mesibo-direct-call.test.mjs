// A 1:1 video call in real Chromium through Mesibo's API only (sdk/dist/mesibo.js, loaded from
// the server by a script tag), against a real `chorus serve`: Ann calls Bob with
// setupVideoCall + call(address); Bob's page gets Mesibo_OnCall and answers; each page decodes
// the other's fake camera in its remote <video>; Ann hangs up and both get
// Mesibo_OnCallStatus(MESIBO_CALLSTATUS_COMPLETE). A call to an unknown address is refused with
// MESIBO_CALLSTATUS_INVALIDDEST.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launchBrowser, until, screenshot } from '../lib/harness.mjs';

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

/** A page with only the Mesibo bundle, a local and a remote <video>, and an app recording
 * every 1:1 call callback in `window.app`. */
async function mesiboPage(label, token) {
  const ctx = await browser.newContext({ viewport: { width: 800, height: 400 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) page.on('console', (m) => console.log(`[${label}]`, m.text()));
  await page.goto(server.base + '/healthz');
  await page.setContent(`<!doctype html><html><body><h3>${label}</h3>
    <video id="localVideo" muted autoplay playsinline width="320" height="180"></video>
    <video id="remoteVideo" autoplay playsinline width="320" height="180"></video>
    <script src="${server.base}/sdk/mesibo.js"></script></body></html>`);
  await page.waitForFunction(() => typeof window.Mesibo === 'function');
  await page.evaluate((token) => {
    const app = (window.app = { status: [], calls: [], callStatus: [] });
    // Mesibo's sample listener (gen-1 names, as in mesibo/samples js/basic-demo).
    function Listener() {}
    Listener.prototype.Mesibo_OnConnectionStatus = (s) => app.status.push(s);
    Listener.prototype.Mesibo_OnCall = (callid, from, video) => {
      app.calls.push({ callid, from, video });
      window.api.setupVideoCall('localVideo', 'remoteVideo', true);
    };
    Listener.prototype.Mesibo_OnCallStatus = (callid, status) => app.callStatus.push({ callid, status });
    const api = (window.api = new Mesibo());
    api.setAppName('chorus-e2e');
    api.setListener(new Listener());
    api.setCredentials(token);
    api.setDatabase('mesibo');
    api.start();
  }, token);
  await until(page, () => window.app.status.includes(MESIBO_STATUS_ONLINE));
  return page;
}

/** Decoded frames of the remote video, once above `min`, with its size. */
async function remoteFrames(page, min) {
  return until(page, (min) => {
    const v = document.getElementById('remoteVideo');
    const n = v.getVideoPlaybackQuality().totalVideoFrames;
    return v.videoWidth > 0 && n >= min ? { frames: n, width: v.videoWidth } : null;
  }, min);
}

test('Mesibo API: a 1:1 video call placed, answered, seen both ways, and hung up', async () => {
  const ann = await server.login('p2p-ann@example.org', 'Ann');
  const bob = await server.login('p2p-bob@example.org', 'Bob');
  const pa = await mesiboPage('Ann', ann.token);
  const pb = await mesiboPage('Bob', bob.token);

  await pa.evaluate((to) => {
    window.api.setupVideoCall('localVideo', 'remoteVideo', true);
    window.api.call(to);
  }, bob.user.address);
  const rang = await until(pb, () => window.app.calls[0]);
  assert.equal(rang.from, ann.user.address);
  assert.equal(rang.video, true);
  await until(pa, () => window.app.callStatus.some((s) => s.status === MESIBO_CALLSTATUS_RINGING));

  await pb.evaluate(() => window.api.answer(true));
  for (const page of [pa, pb]) {
    await until(page, () => window.app.callStatus.some((s) => s.status === MESIBO_CALLSTATUS_ANSWER));
    const first = await remoteFrames(page, 10);
    assert.ok(first.width > 0);
    // Still playing: frames keep coming.
    await remoteFrames(page, first.frames + 20);
    await until(page, () => window.app.callStatus.some((s) => s.status === MESIBO_CALLSTATUS_CHANNELUP));
    const local = await page.evaluate(() => document.getElementById('localVideo').srcObject?.getVideoTracks().length ?? 0);
    assert.equal(local, 1, 'the own camera shows in the local element');
  }
  await screenshot(pa, 'mesibo-direct-call-ann');
  await screenshot(pb, 'mesibo-direct-call-bob');

  const callid = await pa.evaluate(() => window.app.callStatus.find((s) => s.callid > 0).callid);
  assert.equal(await pb.evaluate(() => window.app.calls[0].callid), callid, 'both sides name the same call');
  await pa.evaluate((id) => window.api.hangup(id), callid);
  for (const page of [pa, pb]) {
    const end = await until(page, () => window.app.callStatus.find((s) => s.status >= 0x40));
    assert.deepEqual(end, { callid, status: 0x40 }, 'MESIBO_CALLSTATUS_COMPLETE');
    await until(page, () => document.getElementById('remoteVideo').srcObject === null);
  }

  // A call to nobody: refused with Mesibo's status.
  await pa.evaluate(() => {
    window.app.callStatus.length = 0;
    window.api.call('no-such-user');
  });
  const refused = await until(pa, () => window.app.callStatus[0]);
  assert.deepEqual(refused, { callid: 0, status: 0x46 }, 'MESIBO_CALLSTATUS_INVALIDDEST');
});
