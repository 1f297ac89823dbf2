// The Mesibo compatibility layer (sdk/dist/mesibo.js) in real Chromium against a real
// `chorus serve`. The pages load only that bundle and use only Mesibo's API, the way Mesibo's
// conferencing demo does: setAccessToken, setListener, start; createGroup + addPin (owner) and
// join(pin) (members); groupCall(listener, gid).join(listener); createPublisher(0).call(true,
// true, listener); OnPublisher → p.call(); OnVideo → p.setVideoView('video-…').
//
// The bundle comes from the server (/sdk/mesibo.js), by a script tag, as a ported app loads it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Server, launchBrowser, until, screenshot } from '../lib/harness.mjs';

let server;
let browser;
/** An app's own web server on another origin: its pages load the bundle from chorus by URL. */
let appServer;
let appBase;

before(async () => {
  server = await Server.start();
  browser = await launchBrowser();
  appServer = http.createServer((req, res) => {
    const label = new URL(req.url, 'http://x').searchParams.get('label') || 'app';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><body><h3>${label}</h3>
      <video id="video-local" muted autoplay playsinline width="240" height="135"></video>
      <div id="tiles"></div><script src="${server.base}/sdk/mesibo.js"></script></body></html>`);
  });
  await new Promise((r) => appServer.listen(0, '127.0.0.1', r));
  appBase = `http://127.0.0.1:${appServer.address().port}`;
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await new Promise((r) => (appServer ? appServer.close(r) : r()));
});

/** A page on the server's origin with only the Mesibo bundle loaded. */
async function mesiboPage(label) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) page.on('console', (m) => console.log(`[${label}]`, m.text()));
  await page.goto(server.base + '/healthz');
  await page.setContent(`<!doctype html><html><body><h3>${label}</h3>
    <video id="video-local" muted autoplay playsinline width="240" height="135"></video>
    <div id="tiles"></div><script src="${server.base}/sdk/mesibo.js"></script></body></html>`);
  await page.waitForFunction(() => typeof window.Mesibo === 'function' && typeof window.Chorus === 'undefined');
  return page;
}

/** A page of an app served from its own origin (`appBase`), loading the bundle from chorus. */
async function appPage(label) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${label}] page error:`, e.message));
  if (process.env.VERBOSE) page.on('console', (m) => console.log(`[${label}]`, m.text()));
  await page.goto(`${appBase}/?label=${encodeURIComponent(label)}`);
  await page.waitForFunction(() => typeof window.Mesibo === 'function');
  return page;
}

/** The app: a Mesibo listener and the demo's calls. Everything it sees is recorded in `window.app`. */
async function startApp(page, token) {
  await page.evaluate((token) => {
    const app = (window.app = {
      status: [], messages: [], msgStatus: [], pubs: {}, publisherEvents: [], videos: {}, mutes: [], hangups: [],
      connected: [], groupErrors: [], joined: [], settings: null, created: null, errors: [], subscribers: [],
    });
    const key = (p) => `${p.getAddress()}:${p.getSid()}`;
    const tileId = (p) => `video-${p.getId()}-${p.getSid()}`;
    const scope = {
      Mesibo_onConnectionStatus: (s) => app.status.push(s),
      Mesibo_onMessage: (m) => app.messages.push({ text: m.message, groupid: m.groupid, peer: m.peer, incoming: m.isIncoming() }),
      Mesibo_onMessageStatus: (m) => app.msgStatus.push({ id: m.id, status: m.status }),
      Mesibo_onError: (e) => app.errors.push(e),
      Mesibo_onGroupCreated: (profile) => {
        app.created = profile.getGroupId();
        // The demo's room setup: a publisher pin, then a view-only pin.
        profile.addPin({ flags: MESIBO_MEMBERFLAG_SEND | MESIBO_MEMBERFLAG_RECV | MESIBO_MEMBERFLAG_PUBL | MESIBO_MEMBERFLAG_SUBS | MESIBO_MEMBERFLAG_LIST });
      },
      Mesibo_onGroupSettings: (profile, settings, permissions, pins) => {
        app.settings = { gid: profile.getGroupId(), settings, permissions, pins: pins.map((p) => ({ pin: p.pin, flags: p.permissions.flags })) };
        if (app.created === profile.getGroupId() && pins.length === 1) {
          profile.addPin({ flags: MESIBO_MEMBERFLAG_SEND | MESIBO_MEMBERFLAG_RECV | MESIBO_MEMBERFLAG_SUBS | MESIBO_MEMBERFLAG_LIST });
        }
      },
      Mesibo_onGroupJoined: (profile) => {
        app.joined.push(profile.getGroupId());
        profile.getSettings(scope);
      },
      Mesibo_onGroupError: (profile, error) => app.groupErrors.push({ gid: profile?.getGroupId(), error }),
      MesiboGroupcall_OnPublisher: (p, joined) => {
        app.publisherEvents.push({ key: key(p), joined });
        if (joined) {
          app.pubs[key(p)] = p;
          const v = document.createElement('video');
          v.id = tileId(p);
          v.dataset.key = key(p);
          v.width = 320;
          v.height = 180;
          v.muted = true;
          document.getElementById('tiles').appendChild(v);
          p.call(true, true, scope);
        } else {
          delete app.pubs[key(p)];
          document.getElementById(tileId(p))?.remove();
        }
      },
      MesiboGroupcall_OnConnected: (p, c) => app.connected.push({ key: key(p), c }),
      MesiboGroupcall_OnSubscriber: (s, joined) => app.subscribers.push({ address: s.address, name: s.name, joined }),
      MesiboGroupcall_OnVideo: (p) => {
        const id = p.isLocal() ? 'video-local' : tileId(p);
        p.setVideoView(id, (ok) => (app.videos[key(p)] = ok), 100, 50);
      },
      MesiboGroupcall_OnAudio: () => {},
      MesiboGroupcall_OnMute: (p, audio, video, remote) => app.mutes.push({ key: key(p), local: p.isLocal(), audio, video, remote }),
      MesiboGroupcall_OnTalking: () => {},
      MesiboGroupcall_OnHangup: (p, reason) => app.hangups.push({ key: key(p), local: p.isLocal(), reason }),
    };
    app.scope = scope;
    const api = (window.api = new Mesibo());
    api.setAppName('chorus-e2e');
    api.setAccessToken(token);
    api.setListener(scope);
    api.setDatabase('mesibo');
    api.start();
  }, token);
  await until(page, () => window.app.status.includes(MESIBO_STATUS_ONLINE));
  return page.evaluate(() => ({ address: window.api.getAddress(), id: window.api.getSelfProfile().getName() }));
}

async function joinCall(page, gid) {
  await page.evaluate((gid) => {
    window.live = window.api.groupCall(window.app.scope, gid);
    window.live.join(window.app.scope);
  }, gid);
}

async function publish(page) {
  await page.evaluate(() => {
    const pub = (window.pub = window.live.createPublisher(0));
    pub.setVideoSource(MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT);
    pub.call(true, true, window.app.scope);
  });
}

/** Decoded frames of the tile showing `address:sid`, once above `min`. */
async function framesAtLeast(page, key, min) {
  try {
    return await until(
      page,
      ({ key, min }) => {
        const el = document.querySelector(`video[data-key="${key}"]`);
        const n = el?.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
        return n >= min ? n : false;
      },
      { key, min },
    );
  } catch (e) {
    throw new Error(`no ${min} frames of ${key}: ${JSON.stringify(await diagnose(page))}`, { cause: e });
  }
}

/** What the page sees, for a failure message (reads the layer's internal call object). */
function diagnose(page) {
  return page.evaluate(async () => {
    const call = window.live?._callNow();
    const pc = call?.peerConnections.subscribe;
    const inbound = [];
    if (pc) (await pc.getStats()).forEach((s) => s.type === 'inbound-rtp' && inbound.push([s.kind, s.mid, s.bytesReceived, s.framesDecoded]));
    return {
      pc: pc ? [pc.connectionState, pc.signalingState] : null,
      inbound,
      layers: [...(call?.streams.values() ?? [])].map((s) => [s.address, s.sid, s.layer]),
      publisherEvents: window.app.publisherEvents,
      connected: window.app.connected,
      hangups: window.app.hangups,
      errors: window.app.errors,
      tiles: [...document.querySelectorAll('video')].map((v) => ({
        id: v.id,
        tracks: v.srcObject?.getTracks().map((t) => `${t.kind}:${t.readyState}`),
        readyState: v.readyState,
        frames: v.getVideoPlaybackQuality().totalVideoFrames,
      })),
    };
  });
}

test('Mesibo API: room by pins, video both ways, view-only watches and is refused, group message, admin mute, leave', async () => {
  const owner = await server.login('m-owner@example.org', 'Owner');
  const bob = await server.login('m-bob@example.org', 'Bob');
  const viewer = await server.login('m-viewer@example.org', 'Viewer');

  const po = await mesiboPage('Owner');
  const pb = await mesiboPage('Bob');
  const pv = await mesiboPage('Viewer');
  const o = await startApp(po, owner.token);
  const b = await startApp(pb, bob.token);
  const v = await startApp(pv, viewer.token);
  assert.equal(o.address, owner.user.address);

  // The owner creates the room and its two pins with Mesibo's group API. The policy says that
  // member flags decide (the pins'): Chorus reads group flags 0 as "every member may".
  await po.evaluate(() =>
    window.api.createGroup({
      name: 'Mesibo room',
      flags: MESIBO_GROUPFLAG_SENDBYSELECTED | MESIBO_GROUPFLAG_RECVBYSELECTED | MESIBO_GROUPFLAG_PUBBYSELECTED | MESIBO_GROUPFLAG_SUBBYSELECTED | MESIBO_GROUPFLAG_LISTBYSELECTED,
      callFlags: MESIBO_CALLFLAG_DEFAULT | MESIBO_CALLFLAG_SIMULCAST, videoResolution: MESIBO_RESOLUTION_HD,
    }, window.app.scope),
  );
  const settings = await until(po, () => (window.app.settings?.pins.length === 2 ? window.app.settings : false));
  const gid = settings.gid;
  assert.deepEqual(settings.pins.map((p) => p.flags), [0x1f, 0x1b]);
  assert.equal(settings.settings.callFlags, 0x8307);
  const [pubPin, viewPin] = settings.pins.map((p) => p.pin);

  // A wrong pin is an error; the right pins join (Mesibo_onGroupJoined, then onGroupSettings).
  await pb.evaluate((gid) => window.api.getProfile(null, gid).getGroupProfile().join('00000000', window.app.scope), gid);
  const err = await until(pb, () => window.app.groupErrors[0] || false);
  assert.equal(err.error, 3 /* MESIBO_GROUPERR_BADPIN */);
  await pb.evaluate(({ gid, pin }) => window.api.getGroupProfile(gid).join(pin, window.app.scope), { gid, pin: pubPin });
  await pv.evaluate(({ gid, pin }) => window.api.getGroupProfile(gid).join(pin, window.app.scope), { gid, pin: viewPin });
  const bs = await until(pb, (gid) => (window.app.settings?.gid === gid ? window.app.settings : false), gid);
  const vs = await until(pv, (gid) => (window.app.settings?.gid === gid ? window.app.settings : false), gid);
  assert.ok(bs.permissions.flags & 4, 'Bob may publish (MESIBO_MEMBERFLAG_PUBL)');
  assert.ok(!(vs.permissions.flags & 4), 'the viewer may not publish');

  // Everyone joins the call; the owner and Bob publish their cameras.
  for (const page of [po, pb, pv]) await joinCall(page, gid);
  await publish(po);
  await publish(pb);
  const ok = `${o.address}:0`;
  const bk = `${b.address}:0`;
  for (const [page, keys] of [
    [po, [bk]],
    [pb, [ok]],
    [pv, [ok, bk]],
  ]) {
    for (const key of keys) {
      const first = await framesAtLeast(page, key, 10);
      await framesAtLeast(page, key, first + 20);
    }
  }
  // Each publisher hears of its viewers by MesiboGroupcall_OnSubscriber(s, true) with their
  // address and name; getVideoView() is the element a remote stream plays in; only the owner
  // (group admin) has admin permissions in the call.
  const subs = await until(po, ({ b, v }) => {
    const on = window.app.subscribers.filter((s) => s.joined);
    return on.some((s) => s.address === b) && on.some((s) => s.address === v) ? on : false;
  }, { b: b.address, v: v.address });
  assert.equal(subs.find((s) => s.address === v.address).name, 'Viewer');
  const view = await pv.evaluate((k) => {
    const el = window.app.pubs[k].getVideoView();
    return { same: el === document.querySelector(`video[data-key="${k}"]`), width: el?.videoWidth };
  }, bk);
  assert.ok(view.same && view.width > 0, JSON.stringify(view));
  const admin = async (page) => page.evaluate(() => [window.live.hasAdminPermissions(true), window.live.hasAdminPermissions(false)]);
  assert.deepEqual(await admin(po), [true, true]);
  assert.deepEqual(await admin(pb), [false, false]);
  assert.deepEqual(await admin(pv), [false, false]);
  for (const page of [po, pb]) {
    assert.deepEqual(await page.evaluate(() => window.app.connected.filter((c) => c.key.endsWith(':0') && c.c).length >= 2), true);
    // The local preview shows the camera too.
    await until(page, () => document.getElementById('video-local').videoWidth > 0);
  }

  // The view-only member: no publisher of its own anywhere, and a publish attempt ends with OnHangup(p, ERROR).
  await publish(pv);
  const hang = await until(pv, () => window.app.hangups.find((h) => h.local) || false);
  assert.equal(hang.reason, 3 /* MESIBOCALL_HANGUP_REASON_ERROR */);
  assert.equal(await pv.evaluate(() => window.pub.getError().code), 'forbidden');
  for (const page of [po, pb]) {
    const keys = await page.evaluate(() => Object.keys(window.app.pubs));
    assert.ok(!keys.some((k) => k.startsWith(`${v.address}:`)), `no stream of the viewer in ${keys}`);
  }
  assert.deepEqual((await pv.evaluate(() => Object.keys(window.app.pubs))).sort(), [ok, bk].sort());
  await screenshot(pv, 'mesibo-viewer-grid');
  await screenshot(po, 'mesibo-owner-grid');

  // A group message with sendMessage arrives through Mesibo_onMessage; the sender gets SENT.
  const id = await po.evaluate((gid) => {
    const id = window.api.random();
    window.api.sendMessage({ groupid: gid, flag: MESIBO_FLAG_DEFAULT }, id, 'hello from mesibo');
    return id;
  }, gid);
  for (const page of [pb, pv]) {
    const m = await until(page, () => window.app.messages.find((m) => m.text === 'hello from mesibo') || false);
    assert.equal(m.groupid, gid);
    assert.equal(m.peer, o.address);
    assert.equal(m.incoming, true);
  }
  const st = await until(po, (id) => window.app.msgStatus.find((s) => s.id === id && s.status >= 1) || false, id);
  assert.equal(st.status >= 1 && st.status < 0x80, true);

  // The owner (admin) mutes Bob's audio with getAdmin().mute: OnMute in the other tabs.
  assert.equal(await po.evaluate(() => window.live.hasAdminPermissions(false)), true);
  assert.equal(await pv.evaluate(() => window.live.hasAdminPermissions(false)), false);
  await po.evaluate((bk) => window.live.getAdmin().mute([window.app.pubs[bk]], true, false, true), bk);
  for (const page of [po, pv]) {
    await until(page, (bk) => window.app.mutes.some((m) => m.key === bk && m.audio && !m.video && m.remote), bk);
  }
  await until(pb, () => window.app.mutes.some((m) => m.local && m.audio && m.remote));

  // Bob leaves: OnPublisher(p, false) (and OnHangup) elsewhere, his tile goes away.
  await pb.evaluate(() => window.live.leave());
  for (const page of [po, pv]) {
    await until(page, (bk) => window.app.publisherEvents.some((e) => e.key === bk && !e.joined) && !document.querySelector(`video[data-key="${bk}"]`), bk);
    const h = await page.evaluate((bk) => window.app.hangups.find((h) => h.key === bk), bk);
    assert.equal(h.reason, 2 /* MESIBOCALL_HANGUP_REASON_REMOTE */);
  }
  const bh = await until(pb, () => window.app.hangups.find((h) => h.local) || false);
  assert.equal(bh.reason, 1 /* MESIBOCALL_HANGUP_REASON_USER */);
  await screenshot(pv, 'mesibo-viewer-after-leave');
  for (const page of [po, pb, pv]) await page.evaluate(() => window.api.stop());
});

/**
 * A gen-1 app (Mesibo's 2020 API, as its conferencing docs and demo use it): `initGroupCall()`,
 * `setRoom(gid)`, `getLocalParticipant(name, address)`, `call(options, elementId, on_stream,
 * on_status)`, `Mesibo_OnParticipants(all, latest)`. Everything it sees lands in `window.app`.
 */
async function startGen1(page, token) {
  await page.evaluate((token) => {
    const app = (window.app = { status: [], errors: [], participants: [], streams: [], statuses: [] });
    const key = (p) => `${p.getAddress()}:${p.getSid()}`;
    app.on_stream = (p) => {
      app.streams.push({ key: key(p), local: p.isLocal(), name: p.getName() });
      p.attach(p.isLocal() ? 'video-local' : `video-${p.getId()}-${p.getSid()}`, () => {}, 100, 50);
    };
    app.on_status = (p, status) => app.statuses.push({ key: key(p), local: p.isLocal(), status });
    const scope = {
      Mesibo_OnConnectionStatus: (s) => app.status.push(s),
      Mesibo_OnError: (e) => app.errors.push(e),
      Mesibo_OnParticipants: (all, latest) => {
        app.participants.push({ all: all.length, latest: latest.map(key) });
        for (const p of latest) {
          const v = document.createElement('video');
          v.id = `video-${p.getId()}-${p.getSid()}`;
          v.dataset.key = key(p);
          v.width = 320;
          v.height = 180;
          v.muted = true;
          document.getElementById('tiles').appendChild(v);
          p.call(null, v.id, app.on_stream, app.on_status); // the documented way to subscribe
        }
      },
    };
    const api = (window.api = Mesibo.getInstance());
    api.setAppName('chorus-e2e-gen1');
    api.setCredentials(token);
    api.setListener(scope);
    api.setDatabase('mesibo');
    api.start();
  }, token);
  await until(page, () => window.app.status.includes(MESIBO_STATUS_ONLINE));
  return page.evaluate(() => window.api.getAddress());
}

test('Mesibo gen-1 API: room from /api by createhttpRequest; getLocalParticipant(name, address) publishes 360p; call(null, elementId, on_stream, on_status) subscribes and decodes on a page of another origin', async () => {
  const owner = await server.login('g1-owner@example.org', 'Gen1 Owner');
  const viewer = await server.login('g1-viewer@example.org', 'Gen1 Viewer');

  // The owner's page creates the room the way Mesibo's demo pages call their backend: the
  // bundle's HTTP helper, form fields, a relative URL.
  const po = await mesiboPage('Gen1 Owner');
  const room = await po.evaluate(
    (token) =>
      new Promise((resolve) => {
        const req = Mesibo.getInstance().createhttpRequest();
        req.setUrl('/api');
        req.setPostData({ op: 'setgroup', token, name: 'Gen-1 room', resolution: 2 });
        req.send({ asked: 'setgroup' }, (cbdata, response) => resolve({ cbdata, response: JSON.parse(response) }));
      }),
    owner.token,
  );
  assert.deepEqual(room.cbdata, { asked: 'setgroup' });
  assert.equal(room.response.result, 'OK', JSON.stringify(room.response));
  const gid = room.response.gid;
  // The viewer joins with the viewer pin (as the app's backend would have it do).
  await server.api('POST', `/v1/groups/${gid}/join`, { pin: room.response.spin }, viewer.token);

  // The viewer's app is served by another origin and loads the bundle from chorus: the bundle
  // talks to chorus, not to the page's origin. (Its REST calls at connect, the group and
  // conversation lists, need CORS from the server; the call itself runs over the WebSocket.)
  const pv = await appPage('Gen1 Viewer');
  const origins = await pv.evaluate(() => ({ page: location.origin, server: Mesibo.getInstance().getServer() }));
  assert.notEqual(origins.page, new URL(server.base).origin);
  assert.equal(origins.server, new URL(server.base).origin);

  const oAddr = await startGen1(po, owner.token);
  const vAddr = await startGen1(pv, viewer.token);
  assert.equal(oAddr, owner.user.address);
  assert.equal(vAddr, viewer.user.address);

  // The owner publishes its camera with the gen-1 form.
  const pub = await po.evaluate(
    ({ gid, address }) => {
      window.live = window.api.initGroupCall();
      window.live.setRoom(gid);
      const p = (window.pub = window.live.getLocalParticipant('Gen1 Owner', address));
      p.call({ peer: 0, groupid: gid, source: '360p' }, 'video-local', window.app.on_stream, window.app.on_status);
      return { name: p.getName(), sid: p.getSid(), local: p.isLocal() };
    },
    { gid, address: oAddr },
  );
  assert.deepEqual(pub, { name: 'Gen1 Owner', sid: 0, local: true }, 'getLocalParticipant(name, address): the name, not the address');
  const ok = `${oAddr}:0`;
  await until(po, (ok) => window.app.statuses.some((s) => s.key === ok && s.local && s.status === MESIBO_CALLSTATUS_CHANNELUP), ok);
  await until(po, (ok) => window.app.streams.some((s) => s.key === ok && s.local), ok);
  const local = await until(po, () => {
    const v = document.getElementById('video-local');
    return v.videoHeight > 0 ? { w: v.videoWidth, h: v.videoHeight } : false;
  });
  assert.equal(local.h, 360, `the camera is captured at 360p (${local.w}x${local.h})`);

  // The viewer joins the call, is told of the owner's stream and subscribes with call(null, ...).
  await pv.evaluate((gid) => {
    window.live = window.api.initGroupCall();
    window.live.setRoom(gid);
  }, gid);
  await until(pv, (ok) => window.app.participants.some((p) => p.latest.includes(ok)), ok);
  await until(pv, (ok) => window.app.statuses.some((s) => s.key === ok && !s.local && s.status === MESIBO_CALLSTATUS_CHANNELUP), ok);
  const stream = await until(pv, (ok) => window.app.streams.find((s) => s.key === ok) || false, ok);
  assert.deepEqual(stream, { key: ok, local: false, name: 'Gen1 Owner' });

  // The video plays in the element given to call(), and the subscribe connection decodes it.
  const shown = await until(pv, (ok) => {
    const v = document.querySelector(`video[data-key="${ok}"]`);
    const frames = v?.getVideoPlaybackQuality().totalVideoFrames ?? 0;
    return frames > 5 && v.srcObject?.getVideoTracks().length === 1 ? { frames, h: v.videoHeight } : false;
  }, ok);
  assert.ok(shown.h > 0 && shown.h <= 360, `decoded ${JSON.stringify(shown)}`);
  const decoded = await until(pv, async () => {
    const pc = window.live._callNow()?.peerConnections.subscribe;
    let n = 0;
    if (pc) (await pc.getStats()).forEach((s) => s.type === 'inbound-rtp' && s.kind === 'video' && (n += s.framesDecoded ?? 0));
    return n > 0 ? n : false;
  });
  assert.ok(decoded > 0);
  assert.equal(await pv.evaluate((ok) => window.app.participants.filter((p) => p.latest.includes(ok)).length, ok), 1);
  await screenshot(pv, 'mesibo-gen1-viewer');

  // The owner stops: the viewer's on_status gets COMPLETE and Mesibo_OnParticipants drops it.
  await po.evaluate(() => window.pub.hangup());
  await until(pv, (ok) => window.app.statuses.some((s) => s.key === ok && s.status === MESIBO_CALLSTATUS_COMPLETE), ok);
  for (const page of [po, pv]) await page.evaluate(() => window.api.stop());
});
