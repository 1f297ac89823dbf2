// Mesibo's own conferencing web app (github.com/mesibo/conferencing, web/live-demo) on its own
// origin, against a real `chorus serve` started with `cors_origins` set to that origin (issue 19).
//
// The app's pages are served by a second web server (another origin) and load the bundle from
// chorus by URL (`<script src="CHORUS/sdk/mesibo.js">`), with only the backend URL pointed at
// chorus. `APP_JS` below makes the app's calls, in its order and with its arguments (login/login.js
// `login_start`; scripts/controller.js `initMesibo`, `createRoom`, `Mesibo_onGroupCreated`,
// `Mesibo_onGroupSettings`, `enterRoom`, `initGroupCall`, `publish`, `subscribe`,
// `getMessageSession`/`sessionReadMessages`, `sendMessage`, `getLocalScreen`/`streamFromScreen`,
// `removeScreen`, `MesiboGroupcall_OnHangup`), recording what the app would show in `window.app`.
// The pages fetch nothing from outside 127.0.0.1. A page on a third origin, not listed, is refused.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Server, launchBrowser, until, screenshot, fakeDisplayMedia } from '../lib/harness.mjs';

let server;
let browser;
let appServer;
let appBase;
let otherServer;
let otherBase;

/** The app's code (the calls of Mesibo's live demo). `MESIBO_API_URL` is set by the page. */
const APP_JS = String.raw`
const APP_ID = 'com.mesibo.firstapp';
const TOKEN_KEY = 'MESSENGER_DEMO_TOKEN';
const app = (window.app = {
  status: [], created: null, settings: null, pins: null, permissions: null, groupErrors: [], joined: [],
  publisherEvents: [], hangups: [], videos: {}, connected: [], onMessage: [], reads: [], mode: 0,
});
const scope = (window.scope = {});

// login/login.js: login_start(name, phone, otp, on_login)
window.login_start = (name, phone, otp) =>
  new Promise((resolve) => {
    if (phone[0] == '+') phone = phone.substr(1);
    const p = { op: 'login', appid: APP_ID, name, phone, dt: 5 };
    if (otp && otp.length > 4) p.otp = otp;
    const req = Mesibo.getInstance().createhttpRequest();
    req.setUrl(MESIBO_API_URL);
    req.setPostData(p, true);
    req.send(null, (cbdata, response) => {
      if (response === null) return resolve(null);
      const resp = JSON.parse(response);
      if (resp.result == 'OK' && resp.token && resp.token.length > 16) localStorage.setItem(TOKEN_KEY, resp.token);
      resolve(resp);
    });
  });

// scripts/controller.js
window.initMesibo = () => {
  const m = (app.mesibo = new Mesibo());
  m.setAppName(APP_ID);
  if (false == m.setCredentials(localStorage.getItem(TOKEN_KEY))) return -1;
  m.setListener(scope);
  m.setDatabase('mesibo');
  m.start();
};
const streamId = (p) => p.getId() + '-' + p.getType();
const key = (p) => p.getAddress() + ':' + p.getType();
scope.Mesibo_OnConnectionStatus = (s) => app.status.push(s);
scope.Mesibo_OnMessage = (m) =>
  app.onMessage.push({ text: m.message, groupid: m.groupid, peer: m.peer, fileurl: m.fileurl, filetype: m.filetype, size: m.size, title: m.title });
app.statuses = [];
scope.Mesibo_OnMessageStatus = (m) => app.statuses.push({ id: m.id, status: m.status });
window.createRoom = (name, quality) => {
  app.mode = 2;
  const settings = { name, flags: 0 };
  settings.callFlags = MESIBO_GROUPCALLFLAG_SCREEN | MESIBO_GROUPCALLFLAG_TALKING | MESIBO_GROUPCALLFLAG_VALID;
  settings.callFlags |= MESIBO_GROUPCALLFLAG_AUDIO;
  settings.callFlags |= MESIBO_GROUPCALLFLAG_VIDEO;
  settings.videoResolution = parseInt(quality);
  app.mesibo.createGroup(settings, scope);
};
scope.Mesibo_onGroupCreated = (profile) => {
  app.created = profile.getGroupId();
  profile.addPin({ flags: MESIBO_MEMBERFLAG_SEND | MESIBO_MEMBERFLAG_RECV | MESIBO_MEMBERFLAG_PUBL | MESIBO_MEMBERFLAG_SUBS | MESIBO_MEMBERFLAG_LIST }, scope);
};
scope.Mesibo_onGroupJoined = (profile) => {
  app.joined.push(profile.getGroupId());
  if (2 == app.mode) return;
  profile.getGroupProfile().getSettings(scope);
};
scope.Mesibo_onGroupError = (profile, error) => app.groupErrors.push(error);
scope.Mesibo_onGroupSettings = (profile, settings, permissions, pins) => {
  if (2 == app.mode && (!pins || pins.length < 2)) {
    if (1 == pins.length) profile.addPin({ flags: MESIBO_MEMBERFLAG_SEND | MESIBO_MEMBERFLAG_RECV | MESIBO_MEMBERFLAG_SUBS | MESIBO_MEMBERFLAG_LIST }, scope);
    return;
  }
  app.pins = pins.map((p) => ({ pin: p.pin, flags: p.permissions.flags }));
  app.settings = { gid: profile.getGroupId(), callFlags: settings.callFlags, videoResolution: settings.videoResolution };
  app.permissions = permissions.flags;
  app.gid = profile.getGroupId();
  initGroupCall(profile, (permissions.flags & MESIBO_MEMBERFLAG_PUBL) ? true : false);
};
window.enterRoom = (gid, pin) => {
  app.gid = gid;
  const profile = app.mesibo.getProfile(null, gid);
  if (pin) return profile.getGroupProfile().join(pin, scope);
  profile.getGroupProfile().getSettings(scope);
};
function initGroupCall(profile, publish) {
  app.live = app.mesibo.groupCall(scope, profile.getGroupId());
  app.live.join(scope);
  if (!publish) return;
  app.publisher = app.live.createPublisher(0);
  app.publisher.setVideoSource(MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT);
  app.publisher.call();
  if (!app.publisher.isPublished) publish_(app.publisher);
}
function publish_(stream) {
  let audio = true;
  if (stream.getType() > 0) audio = false;
  stream.isPublished = true;
  return stream.call(audio, true, scope);
}
scope.MesiboGroupcall_OnPublisher = (p, joined) => {
  app.publisherEvents.push({ key: key(p), type: p.getType(), joined });
  if (!joined) return;
  p.call(true, true, scope); // subscribe(p, true, true)
};
scope.MesiboGroupcall_OnVideo = (p) => {
  if (p.isLocal()) {
    if (p.getType() > 0) return;
    return p.setVideoView('video-publisher', () => {}, 100, 50);
  }
  let v = document.getElementById('video-' + streamId(p));
  if (!v) {
    v = document.createElement('video');
    v.id = 'video-' + streamId(p);
    v.dataset.key = key(p);
    v.muted = true;
    v.width = 320;
    v.height = 180;
    document.getElementById('streams').appendChild(v);
  }
  p.setVideoView(v.id, (ok) => (app.videos[key(p)] = ok), 100, 50);
};
scope.MesiboGroupcall_OnAudio = () => {};
scope.MesiboGroupcall_OnTalking = () => {};
scope.MesiboGroupcall_OnMute = () => {};
scope.MesiboGroupcall_OnConnected = (p, connected) => app.connected.push({ key: key(p), local: p.isLocal(), connected });
scope.MesiboGroupcall_OnHangup = (p, reason) => {
  app.hangups.push({ key: key(p), type: p.getType(), local: p.isLocal(), reason });
  if (p.isLocal()) return;
  document.getElementById('video-' + streamId(p))?.remove();
};

// The group chat popup: getMessageSession + sessionReadMessages; the list is shown from getMessages().
app.sessions = {};
window.showGroupChat = (gid) => {
  const profile = app.mesibo.getProfile('', gid);
  const rs = (app.sessions[gid] = profile.createReadSession(function on_read(count) {
    app.reads.push(count);
    renderChat(gid);
  }));
  rs.enableReadReceipt(true);
  rs.getUnreadCount(() => {});
  rs.read(200);
};
window.renderChat = (gid) => {
  const list = app.sessions[gid].getMessages();
  document.getElementById('chat').textContent = list.map((m) => m.message).join('\n');
  return list.map((m) => ({ text: m.message, peer: m.peer, groupid: m.groupid }));
};
window.sendMessage = (peer, groupid, value) => {
  const m = { id: app.mesibo.random() };
  if (peer) m.peer = peer;
  if (groupid) m.groupid = groupid;
  m.flag = MESIBO_FLAG_DEFAULT;
  m.message = value;
  app.mesibo.sendMessage(m, m.id, value);
};

// Screens: getLocalScreen(id) + publish; removeScreen(s) hangs it up.
app.screens = [];
window.streamFromScreen = () => {
  const screen = app.live.createPublisher(app.screens.length + 1);
  screen.setVideoSource(MESIBOCALL_VIDEOSOURCE_SCREEN);
  app.screens.push(screen);
  publish_(screen);
};
window.removeScreen = () => app.screens.pop().hangup();
`;

function page(title, body) {
  return `<!doctype html><html><head><title>${title}</title></head><body><h3>${title}</h3>${body}
    <script src="${server.base}/sdk/mesibo.js"></script>
    <script>const MESIBO_API_URL = ${JSON.stringify(server.base + '/api')};</script>
    <script src="/app.js"></script></body></html>`;
}

/** A web server for the app's pages: login.html, index.html (the room) and app.js. */
function appWebServer() {
  return http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      return res.end(APP_JS);
    }
    const html =
      url.pathname === '/login.html'
        ? page('Login', '<input id="name"><input id="phone"><input id="otp">')
        : page('Room', '<video id="video-publisher" muted autoplay playsinline width="240" height="135"></video><div id="streams"></div><pre id="chat"></pre>');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
}

async function listen(srv) {
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${srv.address().port}`;
}

before(async () => {
  // The app's origin is known before the server starts, so that it can be listed.
  appServer = appWebServer();
  appBase = await listen(appServer);
  otherServer = appWebServer();
  otherBase = await listen(otherServer);
  server = await Server.start({ CHORUS_CORS_ORIGINS: appBase });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const s of [appServer, otherServer]) await new Promise((r) => (s ? s.close(r) : r()));
});

/** A browser context for one user; records every URL its pages request. */
async function userContext(label, requested) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) page.on('console', (m) => console.log(`[${label}]`, m.text()));
  page.on('request', (r) => requested.push(r.url()));
  await fakeDisplayMedia(page);
  return page;
}

/** The SMS files in the server's outbox addressed to `phone` (digits). */
function smsTo(phone) {
  const dir = path.join(server.data, 'outbox');
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir).filter((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').includes(`To: +${phone}`)).length;
}

/** The app's login page: a code by phone, the code from the server's outbox, the token. */
async function loginByPhone(p, name, phone) {
  await p.goto(`${appBase}/login.html`);
  await p.waitForFunction(() => typeof window.login_start === 'function' && typeof Mesibo === 'function');
  const sent = await p.evaluate(({ name, phone }) => window.login_start(name, phone), { name, phone });
  assert.equal(sent?.result, 'OK', `code requested: ${JSON.stringify(sent)}`);
  const code = server.codeFor(phone);
  const done = await p.evaluate(({ name, phone, code }) => window.login_start(name, phone, code), { name, phone, code });
  assert.equal(done?.result, 'OK', JSON.stringify(done));
  assert.equal(done.phone, phone.slice(1));
  assert.ok(done.token.length > 16 && done.address);
  // The app moves on to its room page (index.html) with the token in localStorage.
  await p.goto(`${appBase}/index.html`);
  await p.waitForFunction(() => typeof window.initMesibo === 'function' && typeof Mesibo === 'function');
  await p.evaluate(() => window.initMesibo());
  await until(p, () => window.app.status.includes(MESIBO_STATUS_ONLINE));
  return done;
}

async function framesOf(p, k, min) {
  return until(
    p,
    ({ k, min }) => {
      const v = document.querySelector(`video[data-key="${k}"]`);
      const n = v?.getVideoPlaybackQuality().totalVideoFrames ?? 0;
      return n >= min ? n : false;
    },
    { k, min },
  );
}

test("Mesibo's conferencing app on its own origin: phone login by createhttpRequest, a room with GROUPCALLFLAG names, a chat in getMessages(), the whiteboard between two members, a remote screen share ended with REMOTE", async () => {
  const requested = [];
  const po = await userContext('Owner', requested);
  const pm = await userContext('Member', requested);

  const owner = await loginByPhone(po, 'Owner', '+15550100001');
  const member = await loginByPhone(pm, 'Member', '+15550100002');
  assert.equal(await po.evaluate(() => location.origin), appBase);
  assert.notEqual(appBase, new URL(server.base).origin);

  // "Create room": createGroup with the GROUPCALLFLAG names, then the publisher and viewer pins
  // from Mesibo_onGroupCreated / Mesibo_onGroupSettings, then the call with the camera.
  await po.evaluate(() => window.createRoom('Standup', '0'));
  const room = await until(po, () => (window.app.pins?.length === 2 && window.app.live ? { settings: window.app.settings, pins: window.app.pins, permissions: window.app.permissions } : false));
  const flags = await po.evaluate(() => ({
    wanted: MESIBO_GROUPCALLFLAG_SCREEN | MESIBO_GROUPCALLFLAG_TALKING | MESIBO_GROUPCALLFLAG_VALID | MESIBO_GROUPCALLFLAG_AUDIO | MESIBO_GROUPCALLFLAG_VIDEO,
    same: MESIBO_GROUPCALLFLAG_VIDEO === MESIBO_CALLFLAG_VIDEO && MESIBO_GROUPCALLFLAG_SCREEN === MESIBO_CALLFLAG_SCREEN,
  }));
  assert.ok(flags.same, 'GROUPCALLFLAG names alias CALLFLAG values');
  assert.equal(room.settings.callFlags & flags.wanted, flags.wanted, `call flags ${room.settings.callFlags.toString(16)}`);
  assert.deepEqual(room.pins.map((p) => p.flags), [0x1f, 0x1b]);
  const gid = room.settings.gid;
  const pubPin = room.pins.find((p) => p.flags & 4).pin;

  // The app's older version (web/live-demo/web) made rooms through its backend instead: op=setgroup
  // as form fields with the token in the body. That works from this origin too, and the room is
  // listed by op=rooms.
  const apiOn = (page) => (params) =>
    page.evaluate(
      (params) =>
        new Promise((resolve) => {
          const req = Mesibo.getInstance().createhttpRequest();
          req.setUrl(MESIBO_API_URL);
          req.setPostData(params);
          req.send(null, (cbdata, response) => resolve(response && JSON.parse(response)));
        }),
      params,
    );
  const api = apiOn(po);
  const old = await api({ op: 'setgroup', token: owner.token, name: 'Old style room', resolution: 2 });
  assert.equal(old?.result, 'OK', JSON.stringify(old));
  assert.ok(old.gid > 0 && old.pin && old.spin);
  const rooms = await api({ op: 'rooms', token: owner.token });
  assert.equal(rooms?.result, 'OK', JSON.stringify(rooms));
  assert.ok(JSON.stringify(rooms).includes('Old style room'), JSON.stringify(rooms));

  // The member enters the room by id and publisher pin and publishes too; each sees the other's camera.
  await pm.evaluate(({ gid, pin }) => window.enterRoom(gid, pin), { gid, pin: pubPin });
  await until(pm, (gid) => window.app.joined.includes(gid) && window.app.live, gid);
  const ownerCam = `${owner.address}:0`;
  const memberCam = `${member.address}:0`;
  await framesOf(po, memberCam, 10);
  await framesOf(pm, ownerCam, 10);

  // Chat: a message sent before the owner opens the group chat comes from the history read, the
  // next ones live; the popup shows readSession.getMessages(), the owner's own send included.
  await pm.evaluate((gid) => window.sendMessage('', gid, 'hello before'), gid);
  await until(po, () => window.app.onMessage.some((m) => m.text === 'hello before'));
  await po.evaluate((gid) => window.showGroupChat(gid), gid);
  await until(po, () => window.app.reads.length > 0);
  assert.deepEqual(
    await po.evaluate((gid) => window.renderChat(gid).map((m) => m.text), gid),
    ['hello before'],
  );
  await pm.evaluate((gid) => window.sendMessage('', gid, 'hello live'), gid);
  await po.evaluate((gid) => window.sendMessage('', gid, 'hello back'), gid);
  const chat = await until(
    po,
    (gid) => {
      const list = window.renderChat(gid);
      return list.length >= 3 ? list : false;
    },
    gid,
  );
  assert.deepEqual(chat.map((m) => m.text), ['hello before', 'hello live', 'hello back']);
  assert.ok(chat.every((m) => m.groupid === gid));
  assert.equal(chat[1].peer, member.address);
  assert.match(await po.locator('#chat').textContent(), /hello before\nhello live\nhello back/);
  await until(pm, () => window.app.onMessage.some((m) => m.text === 'hello back'));

  // Whiteboard, as the app draws: each stroke goes to its backend as op=setboard with the object's
  // JSON text in a form field, and the board is loaded with op=getboard; each member sees the
  // other's strokes, in order.
  const stroke = (uid, n) => JSON.stringify({ type: 'line', points: [n, n + 1, n + 2, n + 3], id: { uid, n } });
  const drawn = await api({ op: 'setboard', token: owner.token, gid, obj: stroke(owner.uid, 1) });
  assert.equal(drawn?.result, 'OK', JSON.stringify(drawn));
  const seen = await apiOn(pm)({ op: 'getboard', token: member.token, gid });
  assert.equal(seen?.result, 'OK', JSON.stringify(seen));
  assert.deepEqual(seen.objs, [JSON.parse(stroke(owner.uid, 1))]);
  const added = await apiOn(pm)({ op: 'setboard', token: member.token, gid, obj: stroke(member.uid, 2) });
  assert.equal(added?.result, 'OK', JSON.stringify(added));
  const board = await api({ op: 'getboard', token: owner.token, gid });
  assert.deepEqual(board.objs, [JSON.parse(stroke(owner.uid, 1)), JSON.parse(stroke(member.uid, 2))]);

  // The member shares a screen: a second stream (type 1) from the member, with pictures.
  await pm.evaluate(() => window.streamFromScreen());
  const memberScreen = `${member.address}:1`;
  await until(po, (k) => window.app.publisherEvents.some((e) => e.key === k && e.joined && e.type === 1), memberScreen);
  await framesOf(po, memberScreen, 10);
  await screenshot(po, 'mesibo-app-owner-with-screen');

  // The member stops sharing: the owner is told with OnHangup(p, REMOTE) for that stream only.
  await pm.evaluate(() => window.removeScreen());
  const hang = await until(po, (k) => window.app.hangups.find((h) => h.key === k) || false, memberScreen);
  assert.equal(hang.reason, 2 /* MESIBOCALL_HANGUP_REASON_REMOTE */);
  assert.equal(hang.type, 1);
  assert.equal(hang.local, false);
  assert.equal(await po.evaluate((k) => !document.querySelector(`video[data-key="${k}"]`), memberScreen), true);
  const before = await framesOf(po, memberCam, 1);
  await framesOf(po, memberCam, before + 10); // the camera plays on
  assert.deepEqual(await po.evaluate((k) => window.app.hangups.filter((h) => h.key === k), memberCam), []);

  // Nothing was fetched from outside this machine.
  const outside = requested.filter((u) => !/^(https?|wss?):\/\/127\.0\.0\.1[:/]/.test(u) && !/^(data|blob):/.test(u));
  assert.deepEqual(outside, []);
  assert.ok(requested.some((u) => u.startsWith(appBase)) && requested.some((u) => u.startsWith(server.base)));
  for (const p of [po, pm]) await p.evaluate(() => window.app.mesibo.stop());
});

/** In the page: SHA-256 (hex) of what `url` serves, with the HTTP status and length. */
async function fetchDigest(p, url) {
  return p.evaluate(async (url) => {
    const r = await fetch(url);
    const bytes = new Uint8Array(await r.arrayBuffer());
    const sha = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
    return { status: r.status, length: bytes.length, sha };
  }, url);
}

test("Mesibo's file messages on its own origin: sendFile of a 5 MB File arrives at the other user with the same bytes; op=upload by createhttpRequest, then sendFile by its URL", async () => {
  const pa = await userContext('Alice', []);
  const pb = await userContext('Bob', []);
  const alice = await loginByPhone(pa, 'Alice', '+15550100021');
  const bob = await loginByPhone(pb, 'Bob', '+15550100022');

  // sendFile(params, id, File): 5 MB of random bytes in a 1:1 chat.
  const FIVE_MB = 5 * 1024 * 1024;
  const sent = await pa.evaluate(
    async ({ peer, size }) => {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
      const sha = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
      const id = window.app.mesibo.random();
      window.app.mesibo.sendFile({ peer, flag: MESIBO_FLAG_DEFAULT }, id, new File([bytes], 'five-mb.bin', { type: 'application/octet-stream' }));
      return { sha, id };
    },
    { peer: bob.address, size: FIVE_MB },
  );
  const got = await until(pb, () => window.app.onMessage.find((m) => m.title === 'five-mb.bin') || false, undefined, 60_000);
  assert.equal(got.peer, alice.address);
  assert.equal(got.size, FIVE_MB);
  assert.equal(got.filetype, 10 /* MESIBO_FILETYPE_OTHER */);
  assert.ok(got.fileurl.startsWith(server.base), got.fileurl);
  assert.deepEqual(await fetchDigest(pb, got.fileurl), { status: 200, length: FIVE_MB, sha: sent.sha });
  // The sender is told it was sent, and never of a failure.
  await until(pa, (id) => window.app.statuses.some((s) => s.id === id && s.status === MESIBO_MSGSTATUS_SENT), sent.id);
  assert.deepEqual(await pa.evaluate((id) => window.app.statuses.filter((s) => s.id === id && s.status >= 0x80), sent.id), []);

  // Mesibo's demo stores a file with op=upload (multipart `file`, the token a form field) and
  // then sends its URL; here through the bundle's createhttpRequest with a FormData.
  const text = 'a note stored by op=upload\n'.repeat(100);
  const up = await pa.evaluate(
    (text) =>
      new Promise((resolve) => {
        const fd = new FormData();
        fd.append('op', 'upload');
        fd.append('token', localStorage.getItem(TOKEN_KEY));
        fd.append('file', new File([text], 'note.txt', { type: 'text/plain' }));
        const req = Mesibo.getInstance().createhttpRequest();
        req.setUrl(MESIBO_API_URL);
        req.setPostData(fd);
        req.send(null, (cbdata, response) => resolve(response && JSON.parse(response)));
      }),
    text,
  );
  assert.equal(up?.result, 'OK', JSON.stringify(up));
  assert.match(up.file, /\/v1\/files\/[0-9a-f]{32}\/content$/);
  await pa.evaluate(
    ({ peer, url, size }) =>
      window.app.mesibo.sendFile({ peer }, window.app.mesibo.random(), { filetype: 10, fileurl: url, size, title: 'note.txt', message: 'see the note' }),
    { peer: bob.address, url: up.file, size: text.length },
  );
  const note = await until(pb, () => window.app.onMessage.find((m) => m.title === 'note.txt') || false);
  assert.equal(note.text, 'see the note');
  const want = await pa.evaluate(async (text) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)))].map((b) => b.toString(16).padStart(2, '0')).join(''), text);
  assert.deepEqual(await fetchDigest(pb, note.fileurl), { status: 200, length: text.length, sha: want });
  for (const p of [pa, pb]) await p.evaluate(() => window.app.mesibo.stop());
});

test('a page on an origin not in cors_origins is refused: no login answer, nothing sent, no WebSocket', async () => {
  const p = await userContext('Elsewhere', []);
  await p.goto(`${otherBase}/login.html`);
  // The bundle loads by script tag (no CORS needed for that) ...
  await p.waitForFunction(() => typeof window.login_start === 'function' && typeof Mesibo === 'function');
  // ... but the JSON login (preflighted) gets no answer it may read, and neither does a form
  // post (sent without a preflight): the server refused both, so no code was texted.
  assert.equal(await p.evaluate(() => window.login_start('Elsewhere', '+15550100009')), null);
  const form = await p.evaluate(
    () =>
      new Promise((resolve) => {
        const req = Mesibo.getInstance().createhttpRequest();
        req.setUrl(MESIBO_API_URL);
        req.setPostData({ op: 'login', appid: 'x', name: 'Elsewhere', phone: '15550100009', dt: 5 });
        req.send(null, (cbdata, response) => resolve(response));
      }),
  );
  assert.equal(form, null);
  assert.equal(smsTo('15550100009'), 0, 'nothing served to a disallowed origin');
  // With a valid token, its WebSocket is refused too.
  const token = (await server.login('elsewhere@example.org', 'Elsewhere')).token;
  const ws = await p.evaluate(
    ({ url }) =>
      new Promise((resolve) => {
        const s = new WebSocket(url);
        s.onopen = () => resolve('open');
        s.onclose = () => resolve('closed');
      }),
    { url: `${server.base.replace('http', 'ws')}/v1/ws?token=${token}` },
  );
  assert.equal(ws, 'closed');
  // The same request from the app's listed origin is served (the control for the refusals above).
  const ok = await userContext('Listed', []);
  await ok.goto(`${appBase}/login.html`);
  await ok.waitForFunction(() => typeof window.login_start === 'function');
  assert.equal((await ok.evaluate(() => window.login_start('Listed', '+15550100010')))?.result, 'OK');
  assert.equal(smsTo('15550100010'), 1);
});
