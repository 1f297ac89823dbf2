// The Mesibo compatibility layer (src/mesibo/): listener dispatch with Mesibo's names and
// arguments, message send/status mapping, group management callbacks, and the group-call
// participant flow, over the fake WebSocket / RTCPeerConnection.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Mesibo, MESIBO_CONSTANTS as C, callbackOf, fire, type MesiboParticipant } from '../src/mesibo/index.ts';
import { FakePeerConnection, FakeTrack, FakeWebSocket, flush, until, type Json } from './fakes.ts';

const PERMS = { publish: true, subscribe: true, list: true, call_control: true, hangup: true };
const SETTINGS = { audio: true, video: true, screen: true, simulcast: false, max_height: 720, max_duration_secs: null, max_streams: 4 };
const MUTE0 = { audio: false, video: false };
const cam = (sid = 0) => ({ sid, audio: true, video: true, screen: false, layers: 1, height: 720, muted: { ...MUTE0 } });
const participant = (address: string, streams: Json[] = [], perms: Json = PERMS) => ({
  address, name: address.toUpperCase(), permissions: { ...perms }, admin_muted: { ...MUTE0 }, talking: false, streams,
});

interface Rest {
  calls: { method: string; path: string; body: Json }[];
  routes: Record<string, (body: Json) => [number, Json]>;
}

function fakeFetch(rest: Rest) {
  return async (url: string, init?: RequestInit): Promise<Response> => {
    const path = url.replace(/^https?:\/\/[^/]+/, '');
    const method = init?.method ?? 'GET';
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    rest.calls.push({ method, path, body });
    const h = rest.routes[`${method} ${path}`];
    const [status, json] = h ? h(body) : [200, method === 'GET' && path === '/v1/groups' ? [] : {}];
    return new Response(json === null ? '' : JSON.stringify(json), { status });
  };
}

/** A listener that records every Mesibo callback it gets, with its arguments. */
function recorder() {
  const log: { name: string; args: unknown[] }[] = [];
  const names = [
    'Mesibo_onConnectionStatus', 'Mesibo_onMessage', 'Mesibo_onMessageStatus', 'Mesibo_onMessageUpdate', 'Mesibo_onPresence',
    'Mesibo_onGroupCreated', 'Mesibo_onGroupJoined', 'Mesibo_onGroupSettings', 'Mesibo_onGroupError', 'Mesibo_onGroupMembers',
    'Mesibo_onGroupMembersJoined', 'Mesibo_onError', 'Mesibo_onParticipants', 'Mesibo_onParticipantUpdated', 'Mesibo_onSubscriber',
    'MesiboGroupcall_OnPublisher', 'MesiboGroupcall_OnSubscriber', 'MesiboGroupcall_OnConnected', 'MesiboGroupcall_OnVideo',
    'MesiboGroupcall_OnAudio', 'MesiboGroupcall_OnMute', 'MesiboGroupcall_OnTalking', 'MesiboGroupcall_OnHangup',
  ];
  const l: Record<string, unknown> = { log };
  for (const n of names) l[n] = (...args: unknown[]) => log.push({ name: n, args });
  const of = (name: string) => log.filter((e) => e.name === name).map((e) => e.args);
  return { l, log, of };
}

async function started(rest: Rest = { calls: [], routes: {} }) {
  const mesibo = new Mesibo({
    server: 'http://localhost:8080',
    WebSocket: FakeWebSocket,
    RTCPeerConnection: FakePeerConnection as unknown as typeof RTCPeerConnection,
    fetch: fakeFetch(rest),
    reconnect: false,
    pingInterval: 0,
  });
  const r = recorder();
  mesibo.setAppName('com.example.app');
  assert.equal(mesibo.setAccessToken('tok-1234567890abcdef'), true);
  mesibo.setListener(r.l);
  mesibo.setDatabase('mesibo');
  assert.equal(mesibo.start(), 0);
  const ws = FakeWebSocket.last;
  ws.handshake({ address: 'uA' });
  await until(() => mesibo.getConnectionStatus() === C.MESIBO_STATUS_ONLINE);
  return { mesibo, ws, rest, ...r };
}

beforeEach(() => {
  FakeWebSocket.reset();
  FakePeerConnection.reset();
});

test('dispatch: duck-typed, both capitalisations, once per object, a throwing listener does not stop the others', () => {
  const calls: string[] = [];
  const a = { Mesibo_onMessage: (m: unknown) => calls.push(`a:${m}`) };
  const b = { Mesibo_OnMessage: (m: unknown) => calls.push(`b:${m}`) }; // gen-1 spelling
  const c = { Mesibo_onMessage: () => { throw new Error('boom'); } };
  const d = { somethingElse: 1 };
  const err = console.error;
  console.error = () => {};
  try {
    assert.equal(fire([a, b, c, d, a], 'Mesibo_onMessage', 'x'), 3);
  } finally {
    console.error = err;
  }
  assert.deepEqual(calls, ['a:x', 'b:x']);
  assert.equal(callbackOf({ MesiboGroupcall_onVideo() {} }, 'MesiboGroupcall_OnVideo') !== null, true);
  assert.equal(callbackOf(null, 'Mesibo_onMessage'), null);
});

test('connection status: CONNECTING, ONLINE after sync, STOPPED on stop(); AUTHFAIL without a token', async () => {
  const { mesibo, of, ws } = await started();
  assert.deepEqual(of('Mesibo_onConnectionStatus'), [[C.MESIBO_STATUS_CONNECTING, 0], [C.MESIBO_STATUS_ONLINE, 0]]);
  assert.equal(C.MESIBO_STATUS_ONLINE, 1);
  assert.equal(mesibo.getAddress(), 'uA');
  assert.equal(mesibo.getSelfProfile()!.getName(), 'Ann');
  assert.equal(ws.url, 'ws://localhost:8080/v1/ws?token=tok-1234567890abcdef');
  mesibo.stop();
  assert.deepEqual(of('Mesibo_onConnectionStatus').at(-1), [C.MESIBO_STATUS_STOPPED, 0]);

  const m2 = new Mesibo({ server: 'http://localhost:8080', WebSocket: FakeWebSocket });
  const r = recorder();
  m2.setListener(r.l);
  assert.equal(m2.start(), -1);
  assert.deepEqual(r.of('Mesibo_onConnectionStatus'), [[C.MESIBO_STATUS_AUTHFAIL, 0]]);
});

test('sendMessage: params {peer|groupid, type}, SENT then DELIVERED/READ from receipts; failures ≥ 0x80', async () => {
  const { mesibo, ws, of } = await started();
  const statuses: number[] = [];
  mesibo.addListener({ Mesibo_onMessageStatus: (m: Json) => statuses.push(m.status) });
  assert.equal(mesibo.sendMessage({ peer: 'uB', flag: C.MESIBO_FLAG_DEFAULT, type: 7, expiry: 3600 }, 42, 'hello'), 0);
  const f = ws.lastOf('send');
  assert.match(f.id, /^mz[0-9a-f]{8}-42$/, 'the wire id is made unique per page');
  assert.deepEqual({ ...f, rid: undefined }, { type: 'send', id: f.id, peer: 'uB', text: 'hello', mtype: 7, rid: undefined });
  ws.reply('send', { type: 'sent', id: f.id, mid: 9, seq: 5, pos: 3, ts: 1000, status: 1, duplicate: false });
  await flush();
  ws.receive({ type: 'receipt', peer: 'uB', by: 'uB', status: 2, seq: 5 });
  ws.receive({ type: 'receipt', peer: 'uB', by: 'uB', status: 3, seq: 6 });
  const st = of('Mesibo_onMessageStatus').map(([m]) => m as Json);
  assert.deepEqual(statuses, [C.MESIBO_MSGSTATUS_SENT, C.MESIBO_MSGSTATUS_DELIVERED, C.MESIBO_MSGSTATUS_READ]);
  assert.equal(st[0], st[2], 'the same message object is updated');
  assert.equal(st[0].id, 42);
  assert.equal(st[0].peer, 'uB');
  assert.equal(st[0].mid, 9);
  assert.equal(st[0].isReadByPeer(), true);

  // A group message through the object API; the server refuses it (not a member).
  const m = mesibo.getGroupProfile(1001).newMessage(77);
  m.message = 'to the group';
  m.send();
  const g = ws.lastOf('send');
  assert.equal(g.gid, 1001);
  assert.equal(g.text, 'to the group');
  ws.receive({ type: 'error', rid: g.rid, code: 'forbidden', message: 'no', id: g.id, status: 0x91 });
  await flush();
  const last = of('Mesibo_onMessageStatus').at(-1)![0] as Json;
  assert.equal(last, m);
  assert.equal(last.status, C.MESIBO_MSGSTATUS_NOTMEMBER);
  assert.equal(last.isFailed(), true);
  mesibo.stop();
});

test('incoming messages → Mesibo_onMessage(m, text); edits → onMessageUpdate; presence → onPresence; own echo skipped', async () => {
  const { mesibo, ws, of } = await started();
  const base = { mid: 1, id: '123', seq: 1, pos: 1, ts: 5, mtype: 0, edited: false, deleted: false };
  ws.receive({ type: 'message', ...base, from: 'uB', gid: 1001, text: 'hi all' });
  ws.receive({ type: 'message', ...base, mid: 2, id: 'abc', seq: 2, pos: 2, from: 'uB', peer: 'uA', text: 'hi you', data: { k: 1 } });
  ws.receive({ type: 'message', ...base, mid: 2, id: 'abc', seq: 2, pos: 3, from: 'uB', peer: 'uA', text: 'hi you!', edited: true });
  const msgs = of('Mesibo_onMessage');
  assert.equal(msgs.length, 2);
  const [g, d] = msgs.map(([m]) => m as Json);
  assert.equal(msgs[0]![1], 'hi all');
  assert.deepEqual([g.groupid, g.peer, g.sender, g.message, g.id, g.status, g.isIncoming(), g.isGroupMessage(), g.isRealtimeMessage()],
    [1001, 'uB', 'uB', 'hi all', 123, C.MESIBO_MSGSTATUS_RECEIVEDNEW, true, true, true]);
  assert.deepEqual([d.groupid, d.peer, d.message, d.data, d.id], [0, 'uB', 'hi you', { k: 1 }, 'abc']);
  assert.equal((of('Mesibo_onMessageUpdate')[0]![0] as Json).message, 'hi you!');

  ws.receive({ type: 'presence', from: 'uB', peer: 'uA', presence: 3 });
  const [p] = of('Mesibo_onPresence')[0]! as Json[];
  assert.deepEqual([p.presence, p.peer, p.groupid], [C.MESIBO_PRESENCE_TYPING, 'uB', 0]);
  assert.equal(mesibo.getProfile('uB').isTyping(), true);

  mesibo.getProfile('uB').sendTyping();
  assert.deepEqual(ws.lastOf('typing'), { type: 'typing', peer: 'uB', on: true });

  // Our own message comes back (another session of ours would see it): not reported twice.
  mesibo.sendMessage({ groupid: 1001 }, 5, 'mine');
  const wid = ws.lastOf('send').id;
  ws.reply('send', { type: 'sent', id: wid, mid: 3, seq: 3, pos: 4, ts: 6, status: 1, duplicate: false });
  ws.receive({ type: 'message', ...base, mid: 3, id: wid, seq: 3, pos: 4, from: 'uA', gid: 1001, text: 'mine' });
  // Another page's message keeps its Mesibo id.
  ws.receive({ type: 'message', ...base, mid: 4, id: 'mz0123abcd-99', seq: 4, pos: 5, from: 'uB', gid: 1001, text: 'theirs' });
  assert.equal((of('Mesibo_onMessage').at(-1)![0] as Json).id, 99);
  await flush();
  assert.equal(of('Mesibo_onMessage').length, 3);
  mesibo.stop();
});

test('read session: read(n) delivers history newest first as DB messages, then sends a read receipt', async () => {
  const rest: Rest = {
    calls: [],
    routes: {
      'GET /v1/users/uB/messages?limit=2': () => [200, {
        before: 3,
        messages: [
          { mid: 3, id: 'x3', from: 'uB', peer: 'uA', seq: 3, pos: 3, ts: 1, mtype: 0, text: 'three', edited: false, deleted: false },
          { mid: 4, id: 'x4', from: 'uA', peer: 'uB', seq: 4, pos: 4, ts: 2, mtype: 0, text: 'four', edited: false, deleted: false },
        ],
      }],
    },
  };
  const { mesibo, ws, of } = await started(rest);
  const rs = mesibo.getProfile('uB').createReadSession();
  rs.enableReadReceipt(true);
  const n = rs.read(2);
  await until(() => ws.ofType('read').length === 1);
  assert.deepEqual({ ...ws.lastOf('read'), rid: undefined }, { type: 'read', peer: 'uB', seq: 3, rid: undefined });
  ws.reply('read', { type: 'ok' });
  assert.equal(await n, 2);
  const got = of('Mesibo_onMessage').map(([m]) => m as Json);
  assert.deepEqual(got.map((m) => [m.message, m.isDbMessage(), m.isIncoming()]), [['four', true, false], ['three', true, true]]);
  // A live message in the conversation while the session is open is marked read too.
  ws.receive({ type: 'message', mid: 5, id: 'x5', from: 'uB', peer: 'uA', seq: 5, pos: 5, ts: 3, mtype: 0, text: 'five', edited: false, deleted: false });
  await until(() => ws.ofType('read').length === 2);
  assert.equal(ws.lastOf('read').seq, 5);
  rs.stop();
  mesibo.stop();
});

test('groups: createGroup → onGroupCreated; addPin → onGroupSettings(profile, settings, permissions, pins); join → onGroupJoined; bad pin → onGroupError(BADPIN)', async () => {
  const group = { gid: 4321, name: 'Room', flags: 0, call_flags: 0x8107, video_resolution: 3, call_duration: 0, owner: 'uA', created_at: 1, membership: { flags: 0x1f, admin_flags: 0xffff } };
  const pins: Json[] = [];
  const rest: Rest = {
    calls: [],
    routes: {
      'POST /v1/groups': () => [201, { group, pins: [] }],
      'POST /v1/groups/4321/pins': (b) => {
        const p = { pin: `1234567${pins.length}`, gid: 4321, flags: b.flags, admin_flags: 0, label: '', expires_at: null, uses_left: null };
        pins.push(p);
        return [201, p];
      },
      'GET /v1/groups/4321': () => [200, group],
      'GET /v1/groups/4321/pins': () => [200, pins],
      'POST /v1/groups/4321/join': (b) => (b.pin === '12345670' ? [200, group] : [403, { error: { code: 'pin_invalid', message: 'bad pin' } }]),
      'GET /v1/groups/4321/members': () => [200, [{ address: 'uA', name: 'Ann', flags: 0x1f, admin_flags: 0xffff }]],
    },
  };
  const { mesibo, of, rest: r } = await started(rest);
  mesibo.createGroup({ name: 'Room', flags: 0, callFlags: 0x8107, videoResolution: 3 });
  await until(() => of('Mesibo_onGroupCreated').length === 1);
  assert.deepEqual(r.calls.find((c) => c.path === '/v1/groups' && c.method === 'POST')!.body, { name: 'Room', flags: 0, call_flags: 0x8107, video_resolution: 3 });
  const profile = of('Mesibo_onGroupCreated')[0]![0] as Json;
  assert.equal(profile.getGroupId(), 4321);
  assert.equal(profile, mesibo.getProfile(null, 4321));
  assert.deepEqual(mesibo.getGroupProfiles(), [profile]);

  profile.addPin({ flags: C.MESIBO_MEMBERFLAG_SEND | C.MESIBO_MEMBERFLAG_RECV | C.MESIBO_MEMBERFLAG_PUBL | C.MESIBO_MEMBERFLAG_SUBS | C.MESIBO_MEMBERFLAG_LIST });
  await until(() => of('Mesibo_onGroupSettings').length === 1);
  const [p1, settings, perms, list] = of('Mesibo_onGroupSettings')[0]! as Json[];
  assert.equal(p1, profile);
  assert.deepEqual(settings, { name: 'Room', flags: 0, callFlags: 0x8107, callDuration: 0, videoResolution: 3, expiry: 0 });
  assert.equal(perms.flags, 0x1f);
  assert.deepEqual(list.map((p: Json) => [p.pin, p.permissions.flags]), [['12345670', 0x1f]]);

  const other = mesibo.getGroupProfile(4321);
  other.join('999999');
  await until(() => of('Mesibo_onGroupError').length === 1);
  assert.deepEqual(of('Mesibo_onGroupError')[0], [other, C.MESIBO_GROUPERR_BADPIN]);
  other.join(12345670);
  await until(() => of('Mesibo_onGroupJoined').length === 1);
  assert.deepEqual(of('Mesibo_onGroupJoined')[0], [other]);

  other.getMembers(10, true);
  await until(() => of('Mesibo_onGroupMembers').length === 1);
  const [, members] = of('Mesibo_onGroupMembers')[0]! as Json[];
  assert.deepEqual(members.map((m: Json) => [m.getAddress(), m.getName(), m.isOwner()]), [['uA', 'Ann', true]]);
  mesibo.stop();
});

async function inCall(selfPerms: Json = PERMS) {
  const s = await started();
  const gl = recorder();
  const live = s.mesibo.groupCall(gl.l, 1001);
  live.join(gl.l);
  await until(() => s.ws.ofType('call_join').length === 1);
  s.ws.reply('call_join', {
    type: 'call_joined', gid: 1001, address: 'uA', permissions: { ...selfPerms }, settings: { ...SETTINGS },
    participants: [participant('uA', [], selfPerms), participant('uB', [cam(0)])],
  });
  await until(() => gl.of('MesiboGroupcall_OnPublisher').length === 1);
  return { ...s, live, gl };
}

test('group call: OnPublisher for a remote stream → p.call() subscribes → OnConnected, OnVideo/OnAudio when tracks arrive → setVideoView', async () => {
  const { mesibo, ws, live, gl } = await inCall();
  const [p, joined] = gl.of('MesiboGroupcall_OnPublisher')[0]! as [MesiboParticipant, boolean];
  assert.equal(joined, true);
  assert.deepEqual([p.getAddress(), p.getSid(), p.getType(), p.getName(), p.isLocal()], ['uB', 0, 0, 'UB', false]);
  assert.equal(live.hasAdminPermissions(false), true);

  const pl = recorder();
  p.call(true, true, pl.l);
  await until(() => ws.ofType('call_subscribe').length === 1);
  assert.deepEqual({ ...ws.lastOf('call_subscribe'), rid: undefined }, { type: 'call_subscribe', address: 'uB', sid: 0, rid: undefined });
  ws.reply('call_subscribe', { type: 'ok' });
  await until(() => pl.of('MesiboGroupcall_OnConnected').length === 1);
  assert.deepEqual(pl.of('MesiboGroupcall_OnConnected')[0], [p, true]);
  assert.equal(pl.of('MesiboGroupcall_OnVideo').length, 0, 'no video before its track');

  ws.receive({
    type: 'call_offer', sdp: 'v=0 m=0:audio m=1:video',
    tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'audio' }, { mid: '1', publisher: 'uB', sid: 0, kind: 'video' }],
  });
  await until(() => pl.of('MesiboGroupcall_OnVideo').length === 1);
  assert.deepEqual(pl.of('MesiboGroupcall_OnVideo')[0], [p]);
  assert.deepEqual(pl.of('MesiboGroupcall_OnAudio')[0], [p]);
  assert.equal(gl.of('MesiboGroupcall_OnVideo').length, 0, 'in-progress callbacks go to the call() listener');

  // setVideoView retries until the element exists.
  const el: Json = { srcObject: null, autoplay: false, muted: false, play: () => Promise.resolve() };
  let exists = false;
  (globalThis as Json).document = { getElementById: (id: string) => (exists && id === 'video-x' ? el : null) };
  const results: boolean[] = [];
  p.setVideoView('video-x', (ok) => results.push(ok), 10, 20);
  await flush(3);
  assert.deepEqual(results, []);
  exists = true;
  await until(() => results.length === 1);
  assert.deepEqual(results, [true]);
  assert.equal(p.getVideoView(), el);
  assert.equal(el.autoplay, true);
  const more: boolean[] = [];
  p.setVideoView('missing', (ok) => more.push(ok), 1, 2);
  await until(() => more.length === 1);
  assert.equal(more[0], false);
  delete (globalThis as Json).document;

  // The publisher mutes its audio; then an admin mutes its video: OnMute(p, audio, video, remote=true).
  ws.receive({ type: 'call_event', gid: 1001, event: 'muted', address: 'uB', sid: 0, muted: { audio: true, video: false } });
  ws.receive({ type: 'call_event', gid: 1001, event: 'updated', address: 'uB', permissions: { ...PERMS }, admin_muted: { audio: false, video: true } });
  assert.deepEqual(pl.of('MesiboGroupcall_OnMute'), [[p, true, false, true], [p, true, true, true]]);
  assert.equal(p.getMuteStatus(true), true);
  // Local (viewer-side) mute: OnMute(..., remote=false) and the track is disabled here only.
  p.toggleAudioMute();
  assert.equal(p._rs!.tracks.audio!.enabled, false);
  assert.deepEqual(pl.of('MesiboGroupcall_OnMute').at(-1), [p, true, false, false]);
  assert.equal(ws.ofType('call_mute').length, 0);

  ws.receive({ type: 'call_event', gid: 1001, event: 'talking', address: 'uB', talking: true });
  assert.deepEqual(pl.of('MesiboGroupcall_OnTalking'), [[p, true]]);
  assert.equal(p.isTalking(), true);

  // Admin API: mute(participants, audio, video, enable), hangup(participants).
  assert.equal(live.getAdmin().mute([p], true, false, true), true);
  assert.deepEqual({ ...ws.lastOf('call_admin'), rid: undefined }, { type: 'call_admin', action: 'mute', address: 'uB', audio: true, rid: undefined });
  ws.reply('call_admin', { type: 'ok' });
  live.getAdmin().hangup([p]);
  assert.deepEqual({ ...ws.lastOf('call_admin'), rid: undefined }, { type: 'call_admin', action: 'hangup', address: 'uB', sid: 0, rid: undefined });
  ws.reply('call_admin', { type: 'ok' });

  // The stream ends: OnHangup(p, REMOTE) to the call() listener, OnPublisher(p, false) to the group listener.
  ws.receive({ type: 'call_event', gid: 1001, event: 'unpublished', address: 'uB', sid: 0, reason: 'hung_up' });
  assert.deepEqual(pl.of('MesiboGroupcall_OnHangup'), [[p, C.MESIBOCALL_HANGUP_REASON_REMOTE]]);
  assert.deepEqual(gl.of('MesiboGroupcall_OnPublisher').at(-1), [p, false]);

  // Someone subscribes to our stream: OnSubscriber({address, name}, true).
  ws.receive({ type: 'call_event', gid: 1001, event: 'subscriber', address: 'uB', sid: 0, joined: true });
  const [s, sj] = gl.of('MesiboGroupcall_OnSubscriber')[0]! as Json[];
  assert.deepEqual([s.address, s.name, s.getSid(), sj], ['uB', 'UB', 0, true]);

  live.leave();
  ws.reply('call_leave', { type: 'ok' });
  await flush();
  mesibo.stop();
});

test('group call: the local publisher publishes getUserMedia tracks; a view-only member gets OnHangup(p, ERROR) without publishing', async () => {
  const nav = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  const asked: Json[] = [];
  Object.defineProperty(globalThis, 'navigator', {
    configurable: true,
    value: {
      mediaDevices: {
        getUserMedia: async (c: Json) => {
          asked.push(c);
          const tracks = [new FakeTrack('audio'), new FakeTrack('video')].map((t) => Object.assign(t, { stop() {} }));
          return { getAudioTracks: () => tracks.filter((t) => t.kind === 'audio'), getVideoTracks: () => tracks.filter((t) => t.kind === 'video'), getTracks: () => tracks };
        },
      },
    },
  });
  try {
    const { mesibo, ws, live } = await inCall();
    const me = live.createPublisher(0).setVideoSource(C.MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT);
    assert.equal(live.createPublisher(0), me);
    const pl = recorder();
    me.call(true, true, pl.l);
    await until(() => ws.ofType('call_publish').length === 1);
    assert.equal(asked[0].audio, true);
    assert.equal(asked[0].video.height.ideal, 720);
    assert.deepEqual(pl.of('MesiboGroupcall_OnVideo'), [[me]], 'local video is announced for a preview');
    const f = ws.lastOf('call_publish');
    assert.deepEqual([f.sid, f.audio, f.video, f.screen], [0, true, true, false]);
    ws.reply('call_publish', { type: 'call_published', stream: cam(0), sdp: 'v=0 answer' });
    await until(() => pl.of('MesiboGroupcall_OnConnected').length === 1);
    assert.deepEqual(pl.of('MesiboGroupcall_OnConnected')[0], [me, true]);
    assert.equal(me.isLocal(), true);
    assert.equal(me.getAddress(), 'uA');

    // Own mute goes to the server.
    me.toggleVideoMute();
    assert.deepEqual({ ...ws.lastOf('call_mute'), rid: undefined }, { type: 'call_mute', sid: 0, video: true, rid: undefined });
    ws.reply('call_mute', { type: 'ok' });
    await flush();
    assert.deepEqual(pl.of('MesiboGroupcall_OnMute').at(-1), [me, false, true, false]);

    // An admin hangs it up.
    ws.receive({ type: 'call_event', gid: 1001, event: 'unpublished', address: 'uA', sid: 0, reason: 'hung_up' });
    assert.deepEqual(pl.of('MesiboGroupcall_OnHangup'), [[me, C.MESIBOCALL_HANGUP_REASON_REMOTE]]);
    mesibo.stop();

    FakeWebSocket.reset();
    const v = await inCall({ ...PERMS, publish: false, call_control: false, hangup: false });
    assert.equal(v.live.hasAdminPermissions(true), false);
    const vp = v.live.createPublisher(0);
    const vl = recorder();
    const warn = console.warn;
    console.warn = () => {};
    try {
      vp.call(true, true, vl.l);
      await until(() => vl.of('MesiboGroupcall_OnHangup').length === 1);
    } finally {
      console.warn = warn;
    }
    assert.deepEqual(vl.of('MesiboGroupcall_OnHangup')[0], [vp, C.MESIBOCALL_HANGUP_REASON_ERROR]);
    assert.equal(vp.getError()!.code, 'forbidden');
    assert.equal(v.ws.ofType('call_publish').length, 0);
    assert.equal(asked.length, 1, 'no camera was opened for the refused publish');
    v.mesibo.stop();
  } finally {
    if (nav) Object.defineProperty(globalThis, 'navigator', nav);
    else delete (globalThis as Json).navigator;
  }
});

test('gen-1: initGroupCall().setRoom(gid) → Mesibo_onParticipants(all, latest); p.call(opts, id, on_stream, on_status)', async () => {
  const { mesibo, ws, of } = await started();
  const live = mesibo.initGroupCall();
  live.setRoom(1001);
  await until(() => ws.ofType('call_join').length === 1);
  ws.reply('call_join', {
    type: 'call_joined', gid: 1001, address: 'uA', permissions: { ...PERMS }, settings: { ...SETTINGS },
    participants: [participant('uA'), participant('uB', [cam(0)])],
  });
  await until(() => of('Mesibo_onParticipants').length === 1);
  const [all, latest] = of('Mesibo_onParticipants')[0]! as [MesiboParticipant[], MesiboParticipant[]];
  assert.equal(all.length, 1);
  assert.equal(latest[0], all[0]);
  const p = latest[0]!;
  const statuses: number[] = [];
  const streams: MesiboParticipant[] = [];
  p.call({ audio: true, video: true }, 'video-b', (s) => streams.push(s), (_s, st) => statuses.push(st));
  await until(() => ws.ofType('call_subscribe').length === 1);
  ws.reply('call_subscribe', { type: 'ok' });
  ws.receive({ type: 'call_offer', sdp: 'v=0 m=0:video', tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'video' }] });
  await until(() => streams.length === 1);
  assert.deepEqual(statuses, [C.MESIBO_CALLSTATUS_CHANNELUP]);
  ws.receive({ type: 'call_event', gid: 1001, event: 'talking', address: 'uB', talking: true });
  assert.deepEqual(of('Mesibo_onParticipantUpdated').at(-1), [[p], p]);
  ws.receive({ type: 'call_event', gid: 1001, event: 'unpublished', address: 'uB', sid: 0, reason: 'unpublished' });
  assert.deepEqual(statuses, [C.MESIBO_CALLSTATUS_CHANNELUP, C.MESIBO_CALLSTATUS_COMPLETE]);
  assert.deepEqual(of('Mesibo_onParticipants').at(-1), [[], []]);
  mesibo.stop();
});
