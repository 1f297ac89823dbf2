// Live mode in the web app (web/dist) in real Chromium against a real `chorus serve`, through the
// UI only: the owner creates a live-stream room and goes live with a camera; two viewers join by
// the view-only link, decode the host, see the viewer count, and do not see each other; one raises
// a hand, the host brings them on stage and everyone decodes their camera; the host sends them
// back and their tile goes away for the others. Then a host who joins late: two viewers raise their
// hands before anyone is on stage; the owner joins afterwards and finds both hands listed, without
// anyone raising again, and brings one on stage.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Server, launchBrowser, until, screenshot } from '../lib/harness.mjs';
import { dist, webApp, newPage as openPage, loginUI as login, tid, tile } from '../lib/webapp.mjs';

let server;
let browser;
let app;
let base;

before(async () => {
  assert.ok(fs.existsSync(path.join(dist, 'index.html')), 'build the app first: cd web && npm run build');
  server = await Server.start();
  app = await webApp(server);
  base = app.base;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await server?.stop();
});

const newPage = (label) => openPage(browser, base, label);
const loginUI = (page, url, email, name) => login(server, page, url, email, name);

/** Waits until the tile's video shows frames and its decoded count keeps rising. */
async function framesRising(page, address, sid) {
  const sel = tile(address, sid);
  const first = await until(
    page,
    (sel) => {
      const v = document.querySelector(`${sel} video`);
      if (!v || v.readyState < 2 || !v.videoWidth) return false;
      const n = v.getVideoPlaybackQuality().totalVideoFrames;
      return n >= 5 && n;
    },
    sel,
    45_000,
  );
  await until(page, ({ sel, min }) => (document.querySelector(`${sel} video`)?.getVideoPlaybackQuality().totalVideoFrames ?? 0) >= min, { sel, min: first + 10 }, 45_000);
}

const viewerCount = (page, n) => until(page, (n) => document.querySelector('[data-testid="viewer-count"]')?.getAttribute('data-count') === String(n), n, 20_000);
const addressOf = (page) => page.evaluate(() => window.__chorus.call.address);
/** The addresses in the participant list (People tab). */
async function peopleListed(page) {
  await page.click(tid('tab-people'));
  await page.waitForSelector(tid('participant-list'));
  return page.$$eval(`${tid('participant')}`, (els) => els.map((e) => e.getAttribute('data-address')).sort());
}

test('web app live stream: viewers watch unseen, one raises a hand, is brought on stage and sent back', async () => {
  const t0 = Date.now();
  const po = await newPage('Host');
  const p1 = await newPage('Viewer1');
  const p2 = await newPage('Viewer2');

  // The owner creates a live-stream room in the UI (360p) and goes live with the camera.
  await loginUI(po, base + '/', 'host@example.org', 'Host');
  await po.waitForSelector(tid('room-create'));
  await po.fill(tid('room-name'), 'Town hall');
  await po.selectOption(tid('room-quality'), '10');
  await po.check(tid('room-live'));
  await po.click(tid('room-create'));
  await po.waitForSelector(tid('room-created'));
  const viewLink = await po.inputValue(tid('invite-viewer'));
  await po.click(tid('enter-room'));
  await po.waitForSelector(tid('preview-video'));
  await po.click(tid('join-call'));
  await po.waitForSelector(tid('live-badge'));
  await viewerCount(po, 0);
  const h = await addressOf(po);
  await until(po, () => window.__chorus.call.published.has(0));

  // Two viewers open the view-only link and join: they decode the host in the live player.
  await loginUI(p1, viewLink, 'v1@example.org', 'Viewer One');
  await p1.waitForSelector(tid('view-only-notice'));
  await p1.click(tid('join-call'));
  await loginUI(p2, viewLink, 'v2@example.org', 'Viewer Two');
  await p2.waitForSelector(tid('view-only-notice'));
  await p2.click(tid('join-call'));
  for (const page of [p1, p2]) await page.waitForSelector(`${tid('live-player')} ${tile(h, 0)}`);
  const v1 = await addressOf(p1);
  const v2 = await addressOf(p2);
  for (const page of [p1, p2]) await framesRising(page, h, 0);

  // Everyone sees two viewers; the viewers see the stage only: not each other, not themselves as a tile.
  for (const page of [po, p1, p2]) await viewerCount(page, 2);
  for (const [page, me] of [
    [p1, v1],
    [p2, v2],
  ]) {
    assert.deepEqual(await page.$$eval(tid('tile'), (els) => els.map((e) => e.getAttribute('data-address'))), [h], 'a viewer has one tile: the host');
    assert.deepEqual(await peopleListed(page), [h, me].sort(), 'a viewer lists the host and itself');
    assert.ok(await page.isVisible(tid('raise-hand')));
    assert.equal(await page.locator(tid('toggle-cam')).count(), 0, 'no camera control in the audience');
  }
  assert.deepEqual(await po.$$eval(tid('tile'), (els) => els.map((e) => e.getAttribute('data-address'))), [h], 'the host sees no viewer tiles');
  assert.deepEqual(await peopleListed(po), [h]);
  await screenshot(p1, 'web-live-viewer');

  // Viewer 1 raises a hand: the host sees it (viewer 2 does not) and brings them on stage.
  await p1.click(tid('raise-hand'));
  await p1.waitForSelector(`${tid('raise-hand')}[aria-pressed="true"]`);
  await po.waitForSelector(`${tid('raised-hand')}[data-address="${v1}"]:has-text("Viewer One")`);
  assert.equal(await p2.locator(tid('raised-hands')).count(), 0);
  await screenshot(po, 'web-live-host-hand');
  await po.click(`${tid('raised-hand')}[data-address="${v1}"] ${tid('bring-on-stage')}`);

  // On stage: viewer 1 gets camera and microphone controls and publishes; the host and viewer 2 decode it.
  await p1.waitForSelector(tid('toggle-cam'));
  assert.equal(await p1.locator(tid('raise-hand')).count(), 0, 'no hand to raise on stage');
  await po.waitForSelector(`${tid('raised-hands')}`, { state: 'detached' });
  for (const page of [po, p2]) await framesRising(page, v1, 0);
  for (const page of [po, p1, p2]) await viewerCount(page, 1);
  assert.deepEqual(await peopleListed(p2), [h, v1, v2].sort(), 'the guest joins the stage in viewer 2\'s list');
  await screenshot(p2, 'web-live-viewer-guest');

  // Sent back: the guest's tile goes away for the others, and the guest is back in the audience.
  await po.click(`${tid('participant')}[data-address="${v1}"] ${tid('send-back')}`);
  for (const page of [po, p2]) await until(page, (a) => !document.querySelector(`[data-testid="tile"][data-address="${a}"]`), v1, 20_000);
  await p1.waitForSelector(tid('raise-hand'));
  assert.equal(await p1.locator(tid('toggle-cam')).count(), 0);
  assert.equal(await p1.evaluate(() => window.__chorus.call.published.size), 0, 'the guest publishes nothing any more');
  assert.deepEqual(await peopleListed(po), [h]);
  for (const page of [po, p1, p2]) await viewerCount(page, 2);
  // The guest still watches the host.
  await framesRising(p1, h, 0);
  for (const page of [po, p1, p2]) await page.context().close();
  console.log(`web-live: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('web app live stream: a host who joins after hands were raised sees them and brings one on stage', async () => {
  const t0 = Date.now();
  const po = await newPage('LateHost');
  const p1 = await newPage('Early1');
  const p2 = await newPage('Early2');

  // The owner creates a live-stream room but does not join it yet.
  await loginUI(po, base + '/', 'late-host@example.org', 'Late Host');
  await po.waitForSelector(tid('room-create'));
  await po.fill(tid('room-name'), 'Q and A');
  await po.check(tid('room-live'));
  await po.click(tid('room-create'));
  await po.waitForSelector(tid('room-created'));
  const viewLink = await po.inputValue(tid('invite-viewer'));

  // Two viewers join by the view-only link while nobody is on stage, and raise their hands.
  const viewers = [];
  for (const [page, email, name] of [
    [p1, 'early1@example.org', 'Early One'],
    [p2, 'early2@example.org', 'Early Two'],
  ]) {
    await loginUI(page, viewLink, email, name);
    await page.waitForSelector(tid('view-only-notice'));
    await page.click(tid('join-call'));
    await page.waitForSelector(tid('live-waiting'));
    await page.click(tid('raise-hand'));
    // Pressed once the server has taken the hand (the button follows the SDK's `handRaised`).
    await page.waitForSelector(`${tid('raise-hand')}[aria-pressed="true"]`);
    viewers.push({ page, name, address: await addressOf(page) });
  }
  const [e1, e2] = viewers;

  // The owner joins now: the raised-hands box lists both viewers by name, nobody having raised again.
  await po.click(tid('enter-room'));
  await po.waitForSelector(tid('preview-video'));
  await po.click(tid('join-call'));
  await po.waitForSelector(tid('live-badge'));
  const h = await addressOf(po);
  await viewerCount(po, 2);
  for (const { address, name } of viewers) {
    await po.waitForSelector(`${tid('raised-hands')} ${tid('raised-hand')}[data-address="${address}"]:has-text("${name}")`, { timeout: 10_000 });
  }
  assert.deepEqual(
    await po.$$eval(tid('raised-hand'), (els) => els.map((e) => e.getAttribute('data-address')).sort()),
    [e1.address, e2.address].sort(),
    'the late host lists exactly the two raised hands',
  );
  for (const { page } of viewers) assert.equal(await page.getAttribute(tid('raise-hand'), 'aria-pressed'), 'true', 'the hands were not raised again');
  await screenshot(po, 'web-live-late-host-hands');

  // The host brings Early One on stage from the box: their page gets camera controls and publishes,
  // the host decodes their camera, and only Early Two is left in the box.
  await po.click(`${tid('raised-hand')}[data-address="${e1.address}"] ${tid('bring-on-stage')}`);
  await e1.page.waitForSelector(tid('toggle-cam'));
  assert.equal(await e1.page.locator(tid('raise-hand')).count(), 0, 'no hand to raise on stage');
  await until(e1.page, () => window.__chorus.call.permissions.publish && window.__chorus.call.published.has(0), undefined, 20_000);
  await po.waitForSelector(`${tid('raised-hand')}[data-address="${e1.address}"]`, { state: 'detached' });
  assert.deepEqual(await po.$$eval(tid('raised-hand'), (els) => els.map((e) => e.getAttribute('data-address'))), [e2.address]);
  await framesRising(po, e1.address, 0);
  await viewerCount(po, 1);
  assert.deepEqual(await peopleListed(po), [h, e1.address].sort(), 'the guest is on stage in the host\'s list');
  for (const page of [po, p1, p2]) await page.context().close();
  console.log(`web-live late host: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
