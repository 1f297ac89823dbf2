// chorus-bot's camera in real Chromium: the bot (target/debug/chorus-bot, its default real-VP8
// clip) publishes into a room's call, a page with the browser SDK subscribes, decodes its frames
// and shows a picture (the test pattern's colours, not a blank or black tile), while the bot
// receives the page's camera.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Server, launchBrowser, sdkPage, until, screenshot, repo } from '../lib/harness.mjs';

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

function botBin() {
  const bin = process.env.CHORUS_BOT_BIN || path.join(repo, 'target', 'debug', 'chorus-bot');
  if (!fs.existsSync(bin)) throw new Error(`${bin} not found: build it first (cargo build -p chorus-bot)`);
  return bin;
}

/** Runs the bot; resolves with its exit code and stdout when it leaves. */
function runBot(args) {
  const child = spawn(botBin(), args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  const done = new Promise((resolve) => child.on('exit', (code) => resolve({ code, out })));
  return { child, done };
}

test('a bot in a call shows a picture in Chromium', async () => {
  const owner = await server.login('owner@example.org', 'Owner');
  const bot = await server.login('bot@example.org', 'Bot');
  const room = await server.api('POST', '/v1/groups', { name: 'Bot room', room: true }, owner.token);
  const gid = room.group.gid;
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.pins[0].pin }, bot.token);

  const page = await sdkPage(browser, server, 'Owner');
  await page.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      const call = await client.joinCall(gid, { autoSubscribe: { height: 360 } });
      const t = (window.t = { client, call, keys: {} });
      call.on('track', (e) => {
        if (e.kind !== 'video') return;
        t.keys[e.track.id] = e.publisher;
        const v = document.createElement('video');
        Object.assign(v, { autoplay: true, muted: true, playsInline: true, width: 640, height: 360 });
        v.dataset.publisher = e.publisher;
        v.srcObject = new MediaStream([e.track]);
        document.getElementById('tiles').appendChild(v);
        e.stream.attach(v);
      });
      t.decoded = async () => {
        const out = {};
        const pc = call.peerConnections.subscribe;
        if (!pc) return out;
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video' && t.keys[s.trackIdentifier]) {
            out[t.keys[s.trackIdentifier]] = Math.max(out[t.keys[s.trackIdentifier]] || 0, s.framesDecoded || 0);
          }
        });
        return out;
      };
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      await call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
    },
    { server: server.base, token: owner.token, gid },
  );

  const { done } = runBot([
    '--server', server.base, '--token', bot.token, '--group', String(gid),
    '--publish', '--expect-publishers', '1', '--duration', '25s', '--json',
  ]);
  const botAddress = (await server.api('GET', '/v1/me', undefined, bot.token)).address;

  // Frames of the bot's camera are decoded, and the count keeps rising.
  const decoded = (min) =>
    until(page, async ({ a, min }) => ((await window.t.decoded())[a] >= min ? (await window.t.decoded())[a] : false), { a: botAddress, min });
  const first = await decoded(10);
  await decoded(first + 30);

  // The tile shows the test pattern: across a grid of samples, saturated colours and more than a
  // few distinct ones (a blank, black or grey tile has neither).
  const look = await until(page, (a) => {
    const el = document.querySelector(`video[data-publisher="${a}"]`);
    if (!el || el.readyState < 2 || !el.videoWidth) return false;
    const c = document.createElement('canvas');
    c.width = el.videoWidth;
    c.height = el.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(el, 0, 0);
    const colours = new Set();
    let saturated = 0;
    for (let y = 1; y < 8; y++) {
      for (let x = 1; x < 8; x++) {
        const [r, gr, b] = g.getImageData(Math.floor((x * c.width) / 8), Math.floor((y * c.height) / 8), 1, 1).data;
        colours.add(`${r >> 5},${gr >> 5},${b >> 5}`);
        if (Math.max(r, gr, b) - Math.min(r, gr, b) > 80) saturated++;
      }
    }
    const seen = { width: el.videoWidth, height: el.videoHeight, colours: colours.size, saturated };
    window.__look = seen;
    return seen.colours >= 6 && seen.saturated >= 5 ? seen : false;
  }, botAddress, 15_000).catch(async () => page.evaluate(() => ({ failed: window.__look })));
  assert.ok(!look.failed, `the bot's tile shows a picture: ${JSON.stringify(look)}`);
  assert.ok([320, 640, 1280].includes(look.width), `a clip's width: ${look.width}`);
  await screenshot(page, 'bot-video');

  // The bot received the page's camera and audio.
  const { code, out } = await done;
  const report = JSON.parse(out);
  assert.equal(code, 0, out);
  assert.equal(report.published, true);
  assert.equal(report.complete_publishers, 1);
});
