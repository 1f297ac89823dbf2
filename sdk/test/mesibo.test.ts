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
  calls: { method: string; path: string; body: Json; headers?: Json }[];
  /** `[status, json, headers?]`; a `null` json is an empty body. */
  routes: Record<string, (body: Json) => [number, Json] | [number, Json, Record<string, string>]>;
}

function fakeFetch(rest: Rest) {
  return async (url: string, init?: RequestInit): Promise<Response> => {
    const path = url.replace(/^https?:\/\/[^/]+/, '');
    const method = init?.method ?? 'GET';
    // JSON bodies are parsed; others (an upload's Blob) are kept as they are.
    const body = typeof init?.body === 'string' ? JSON.parse(init.body) : init?.body;
    rest.calls.push({ method, path, body, headers: init?.headers });
    const h = rest.routes[`${method} ${path}`];
    const tickets = rest.calls.filter((c) => c.path === '/v1/ws/ticket').length;
    const [status, json, headers] = h
      ? h(body)
      : [200, method === 'GET' && path === '/v1/groups' ? [] : path === '/v1/ws/ticket' ? { ticket: `tk-${tickets}`, expires_in: 30 } : {}];
    return new Response(json === null || status === 204 ? null : JSON.stringify(json), { status, headers: headers ?? {} });
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
  const opened = FakeWebSocket.instances.length;
  assert.equal(mesibo.start(), 0);
  const ws = await FakeWebSocket.nth(opened + 1);
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
  assert.equal(ws.url, 'ws://localhost:8080/v1/ws?ticket=tk-1', 'opened with a ticket from POST /v1/ws/ticket');
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

  // Receipts a message did not ask for are not reported (Mesibo's flags): without READRECEIPT a
  // read shows as delivered, without DELIVERYRECEIPT either stays unreported.
  const seen: [unknown, number][] = [];
  mesibo.addListener({ Mesibo_onMessageStatus: (m: Json) => seen.push([m.id, m.status]) });
  const only = (flag: number, id: number) => {
    mesibo.sendMessage({ peer: 'uC', flag }, id, 'x');
    const w = ws.lastOf('send');
    ws.reply('send', { type: 'sent', id: w.id, mid: id, seq: id, pos: id, ts: 1000, status: 1, duplicate: false });
  };
  only(C.MESIBO_FLAG_DELIVERYRECEIPT, 20);
  only(0, 21);
  await flush();
  ws.receive({ type: 'receipt', peer: 'uC', by: 'uC', status: 3, seq: 21 });
  const of20 = seen.filter(([id]) => id === 20).map(([, s]) => s);
  const of21 = seen.filter(([id]) => id === 21).map(([, s]) => s);
  assert.deepEqual(of20, [C.MESIBO_MSGSTATUS_SENT, C.MESIBO_MSGSTATUS_DELIVERED]);
  assert.deepEqual(of21, [C.MESIBO_MSGSTATUS_SENT]);

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
  const members: Json[] = [{ address: 'uA', name: 'Ann', flags: 0x1f, admin_flags: 0xffff }];
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
      'GET /v1/groups/4321/members': () => [200, members],
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
  const [, firstPage] = of('Mesibo_onGroupMembers')[0]! as Json[];
  assert.deepEqual(firstPage.map((m: Json) => [m.getAddress(), m.getName(), m.isOwner()]), [['uA', 'Ann', true]]);

  // Mesibo's paging: `count` per call, the next ones on the next call, `restart` from the top
  // (read again from the server), an empty page past the end.
  members.push(...['uB', 'uC', 'uD'].map((a) => ({ address: a, name: a, flags: 0x1f, admin_flags: 0 })));
  const pages: string[][] = [];
  const l = { Mesibo_onGroupMembers: (_p: unknown, ms: Json[]) => pages.push(ms.map((m: Json) => m.getAddress())) };
  for (const [i, restart] of [true, false, false, true].entries()) {
    other.getMembers(3, restart, l);
    await until(() => pages.length === i + 1);
  }
  assert.deepEqual(pages, [['uA', 'uB', 'uC'], ['uD'], [], ['uA', 'uB', 'uC']]);
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
    type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio m=1:video',
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
  ws.receive({ type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:video', tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'video' }] });
  await until(() => streams.length === 1);
  assert.deepEqual(statuses, [C.MESIBO_CALLSTATUS_CHANNELUP]);
  ws.receive({ type: 'call_event', gid: 1001, event: 'talking', address: 'uB', talking: true });
  assert.deepEqual(of('Mesibo_onParticipantUpdated').at(-1), [[p], p]);
  ws.receive({ type: 'call_event', gid: 1001, event: 'unpublished', address: 'uB', sid: 0, reason: 'unpublished' });
  assert.deepEqual(statuses, [C.MESIBO_CALLSTATUS_CHANNELUP, C.MESIBO_CALLSTATUS_COMPLETE]);
  assert.deepEqual(of('Mesibo_onParticipants').at(-1), [[], []]);
  mesibo.stop();
});

// ---------------------------------------------------------------- issue 19 / issue 10 (bundle side)

test('createhttpRequest: form fields by default, JSON when asked, GET without data; relative URLs go to the server; cb(cbdata, text), cb(cbdata, null) on a network error', async () => {
  const seen: { url: string; method: string; type: string | undefined; body: string | undefined }[] = [];
  let fail = false;
  const fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    if (fail) throw new TypeError('Failed to fetch');
    const h = (init?.headers ?? {}) as Record<string, string>;
    seen.push({ url, method: init?.method ?? 'GET', type: h['content-type'], body: init?.body as string | undefined });
    return new Response(JSON.stringify({ op: 'login', result: 'OK' }), { status: 200 });
  };
  const mesibo = new Mesibo({ server: 'https://chorus.example.org/', fetch });
  const got: unknown[][] = [];
  const cb = (...args: unknown[]) => got.push(args);

  // The login page of Mesibo's demo: a JSON post (setPostData(p, true)) to an absolute URL.
  const login = mesibo.createhttpRequest();
  login.setUrl('https://backend.example.net/login');
  login.setPostData({ op: 'login', phone: '15550001', dt: 5 }, true);
  assert.equal(login.send('ctx', cb), true);
  await until(() => got.length === 1);
  assert.deepEqual(seen[0], { url: 'https://backend.example.net/login', method: 'POST', type: 'application/json', body: '{"op":"login","phone":"15550001","dt":5}' });
  assert.deepEqual(got[0], ['ctx', '{"op":"login","result":"OK"}']);

  // Form fields (what Mesibo backends read), to a relative URL: the bundle's server.
  const form = mesibo.createhttpRequest();
  form.setUrl('/api');
  form.setPostData({ op: 'setgroup', token: 't&k=1', name: 'Room 1', skip: undefined, obj: { a: 1 } });
  form.send(7, cb);
  await until(() => got.length === 2);
  assert.deepEqual(seen[1], {
    url: 'https://chorus.example.org/api', method: 'POST', type: 'application/x-www-form-urlencoded',
    body: 'op=setgroup&token=t%26k%3D1&name=Room+1&obj=%7B%22a%22%3A1%7D',
  });
  assert.equal(got[1]![0], 7);

  // No data: a GET; no URL: the server's /api.
  const get = mesibo.createhttpRequest();
  assert.equal(get.getUrl(), 'https://chorus.example.org/api');
  get.setUrl('api?op=rooms');
  get.send(null, cb);
  await until(() => got.length === 3);
  assert.deepEqual([seen[2]!.url, seen[2]!.method, seen[2]!.body], ['https://chorus.example.org/api?op=rooms', 'GET', undefined]);

  // No answer at all: cb(cbdata, null).
  fail = true;
  const warn = console.warn;
  console.warn = () => {};
  try {
    get.send('x', cb);
    await until(() => got.length === 4);
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(got[3], ['x', null]);

  // A FormData (op=upload with a file) goes as it is, with no content-type of ours: the runtime
  // sets the multipart boundary.
  fail = false;
  const fd = new FormData();
  fd.append('op', 'upload');
  fd.append('file', new Blob(['abc']), 'a.txt');
  let sentBody: unknown;
  const rawFetch = async (url: string, init?: RequestInit): Promise<Response> => {
    sentBody = init?.body;
    return fetch(url, init);
  };
  const m2 = new Mesibo({ server: 'https://chorus.example.org/', fetch: rawFetch });
  const up2 = m2.createhttpRequest();
  up2.setPostData(fd);
  up2.send(null, cb);
  await until(() => got.length === 5);
  assert.equal(sentBody, fd);
  assert.deepEqual([seen[3]!.url, seen[3]!.method, seen[3]!.type], ['https://chorus.example.org/api', 'POST', undefined]);
});

test('MESIBO_GROUPCALLFLAG_* are the MESIBO_CALLFLAG_* values under Mesibo\'s other name', () => {
  const names = ['VALID', 'AUDIO', 'VIDEO', 'DATA', 'SCREEN', 'SIMULCAST', 'SIMULCAST2', '4_3', 'RECORD', 'TALKING', 'VAD', 'FIXEDBITRATE', 'FIXEDRESOLUTION', 'FIXEDFRAMERATE', 'PREFER264', 'DEFAULT'];
  const all = C as unknown as Record<string, number>;
  for (const n of names) {
    assert.equal(typeof all[`MESIBO_GROUPCALLFLAG_${n}`], 'number', n);
    assert.equal(all[`MESIBO_GROUPCALLFLAG_${n}`], all[`MESIBO_CALLFLAG_${n}`], n);
  }
  // The live demo's "Create room" flags.
  assert.equal(C.MESIBO_GROUPCALLFLAG_SCREEN | C.MESIBO_GROUPCALLFLAG_TALKING | C.MESIBO_GROUPCALLFLAG_VALID | C.MESIBO_GROUPCALLFLAG_AUDIO | C.MESIBO_GROUPCALLFLAG_VIDEO, 0x8107);
  assert.equal(C.MESIBO_GROUPCALLFLAG_DEFAULT, 0x8107);
});

test('the bundle talks to the server it was loaded from (its <script src> origin); setServer and new Mesibo({server}) override it', async () => {
  const g = globalThis as Json;
  const hadDoc = 'document' in g;
  g.document = { currentScript: { src: 'https://chorus.example.org:8443/sdk/mesibo.js?v=1' }, getElementById: () => null };
  try {
    await import('../src/mesibo/global.ts');
  } finally {
    if (!hadDoc) delete g.document;
  }
  const { _setBundleServer } = await import('../src/mesibo/mesibo.ts');
  try {
    assert.equal(typeof g.Mesibo, 'function');
    assert.equal(g.MESIBO_GROUPCALLFLAG_VIDEO, 4);
    const rest: Rest = { calls: [], routes: {} };
    const a = new g.Mesibo({ WebSocket: FakeWebSocket, fetch: fakeFetch(rest), reconnect: false, pingInterval: 0 });
    assert.equal(a.getServer(), 'https://chorus.example.org:8443');
    a.setAccessToken('tok-1234567890abcdef');
    a.start();
    assert.equal((await FakeWebSocket.nth(1)).url, 'wss://chorus.example.org:8443/v1/ws?ticket=tk-1');
    assert.equal(a.createhttpRequest().getUrl(), 'https://chorus.example.org:8443/api');
    a.stop();

    const b = new g.Mesibo({ WebSocket: FakeWebSocket, fetch: fakeFetch(rest), reconnect: false, pingInterval: 0 });
    b.setServer('http://127.0.0.1:9000');
    b.setAccessToken('tok-1234567890abcdef');
    b.start();
    assert.equal((await FakeWebSocket.nth(2)).url, 'ws://127.0.0.1:9000/v1/ws?ticket=tk-2');
    b.stop();
    assert.equal(new g.Mesibo({ server: 'http://10.0.0.1:1' }).getServer(), 'http://10.0.0.1:1');

    // An inline script (no src), or one that is not http(s): the page's origin as before.
    _setBundleServer('');
    assert.equal(new g.Mesibo().getServer(), null);
    _setBundleServer('blob:https://x.example/abc');
    assert.equal(new g.Mesibo().getServer(), null);
  } finally {
    _setBundleServer(undefined);
  }
});

test('read sessions keep the conversation: history, live messages and own sends, oldest first; edits and deletions follow; a function is on_read', async () => {
  const msg = (mid: number, seq: number, from: string, text: string) => ({ mid, id: `x${mid}`, from, peer: from === 'uA' ? 'uB' : 'uA', seq, pos: mid, ts: seq, mtype: 0, text, edited: false, deleted: false });
  const rest: Rest = {
    calls: [],
    routes: {
      'GET /v1/users/uB/messages?limit=50': () => [200, { before: 3, messages: [msg(3, 3, 'uB', 'three'), msg(4, 4, 'uA', 'four')] }],
      'GET /v1/users/uB/messages?before=3&limit=50': () => [200, { before: null, messages: [msg(1, 1, 'uB', 'one'), msg(2, 2, 'uA', 'two')] }],
    },
  };
  const { mesibo, ws, of } = await started(rest);
  const reads: number[] = [];
  const rs = mesibo.getProfile('uB').createReadSession((n: number) => reads.push(n));
  assert.equal(typeof rs.getMessages, 'function');
  assert.deepEqual(rs.getMessages(), []);

  // A live message before the first read is listed too (and not twice once history has it).
  ws.receive({ type: 'message', ...msg(4, 4, 'uA', 'four') });
  await rs.read(50);
  assert.deepEqual(reads, [2], 'on_read(count) is called');
  const texts = () => rs.getMessages().map((m) => m.message);
  assert.deepEqual(texts(), ['three', 'four']);
  assert.equal(of('Mesibo_onMessage').filter(([m]) => (m as Json).isDbMessage()).length, 0, 'with on_read, history does not go to Mesibo_onMessage');

  await rs.read(50);
  assert.deepEqual(reads, [2, 2]);
  assert.deepEqual(texts(), ['one', 'two', 'three', 'four']);

  // Live messages of this conversation (not others), then our own send, in order.
  ws.receive({ type: 'message', ...msg(5, 5, 'uB', 'five') });
  ws.receive({ type: 'message', mid: 6, id: 'o', from: 'uC', peer: 'uA', seq: 1, pos: 6, ts: 6, mtype: 0, text: 'elsewhere', edited: false, deleted: false });
  const mine = mesibo.getProfile('uB').newMessage(99);
  mine.message = 'six';
  mine.send();
  assert.deepEqual(texts(), ['one', 'two', 'three', 'four', 'five', 'six']);
  assert.equal(rs.getMessages().at(-1), mine);
  assert.equal(mine.status, C.MESIBO_MSGSTATUS_OUTBOX);
  // Someone else's message overtakes ours before the server answers: ours moves after it by seq.
  ws.receive({ type: 'message', ...msg(7, 6, 'uB', 'overtaker') });
  assert.deepEqual(texts(), ['one', 'two', 'three', 'four', 'five', 'overtaker', 'six']);
  const f = ws.lastOf('send');
  ws.reply('send', { type: 'sent', id: f.id, mid: 8, seq: 7, pos: 8, ts: 7, status: 1, duplicate: false });
  await until(() => mine.status === C.MESIBO_MSGSTATUS_SENT);
  assert.deepEqual(texts(), ['one', 'two', 'three', 'four', 'five', 'overtaker', 'six']);

  // An edit and a deletion change the listed messages in place.
  ws.receive({ type: 'message', ...msg(5, 5, 'uB', 'five!'), pos: 9, edited: true });
  ws.receive({ type: 'message', ...msg(3, 3, 'uB', ''), pos: 10, deleted: true });
  const list = rs.getMessages();
  assert.deepEqual([list[4]!.message, list[4]!.isModified()], ['five!', true]);
  assert.equal(list[2]!.isDeleted(), true);
  assert.equal(of('Mesibo_onMessageUpdate').length, 2);

  // m.delete() removes it from this page only.
  assert.equal(list[0]!.delete(), true);
  assert.deepEqual(texts().slice(0, 2), ['two', '']);

  // readDbSession(peer, gid, query, on_read) works the same.
  const rd: number[] = [];
  const legacy = mesibo.readDbSession('uB', 0, null, (n) => rd.push(n));
  await legacy.read(50);
  assert.deepEqual([rd, legacy.getMessages().map((m) => m.message)], [[2], ['three', 'four']]);
  rs.stop();
  legacy.stop();
  // A stopped session takes no more live messages.
  ws.receive({ type: 'message', ...msg(9, 8, 'uB', 'after stop') });
  assert.equal(rs.getMessages().some((m) => m.message === 'after stop'), false);
  mesibo.stop();
});

test('messages: setType is sent (mtype); sendUpdate/recall edit and delete; forward makes a new message; expiry and flags stay local', async () => {
  const { mesibo, ws, of } = await started();
  const m = mesibo.getProfile('uB').newMessage(1);
  m.message = 'board';
  m.setType(7);
  m.setExpiry(0);
  m.enableReadReceipt(false);
  assert.equal(m.sendUpdate(), false, 'not sent yet');
  m.send();
  const f = ws.lastOf('send');
  assert.deepEqual({ ...f, rid: undefined }, { type: 'send', id: f.id, peer: 'uB', text: 'board', mtype: 7, rid: undefined });
  ws.reply('send', { type: 'sent', id: f.id, mid: 11, seq: 1, pos: 1, ts: 1, status: 1, duplicate: false });
  await until(() => m.mid === 11);

  m.message = 'board v2';
  assert.equal(m.sendUpdate(), true);
  await until(() => ws.ofType('edit').length === 1);
  assert.deepEqual({ ...ws.lastOf('edit'), rid: undefined }, { type: 'edit', mid: 11, text: 'board v2', rid: undefined });
  ws.reply('edit', { type: 'ok' });

  assert.equal(m.recall(), true);
  await until(() => ws.ofType('delete').length === 1);
  assert.deepEqual({ ...ws.lastOf('delete'), rid: undefined }, { type: 'delete', mid: 11, rid: undefined });
  ws.reply('delete', { type: 'error', code: 'forbidden', message: 'too late' });
  await until(() => of('Mesibo_onError').length === 1);
  assert.deepEqual((of('Mesibo_onError')[0]![0] as Json).op, 'recall');

  // Someone else's message cannot be edited or recalled.
  ws.receive({ type: 'message', mid: 12, id: 'z', from: 'uB', peer: 'uA', seq: 2, pos: 2, ts: 2, mtype: 3, text: 'theirs', edited: false, deleted: false });
  const theirs = of('Mesibo_onMessage').at(-1)![0] as Json;
  assert.equal(theirs.type, 3);
  assert.equal(theirs.recall(), false);
  assert.equal(theirs.sendUpdate(), false);

  const fw = theirs.forward(mesibo.getGroupProfile(1001));
  assert.equal(fw.isForwarded(), true);
  fw.send();
  const g = ws.lastOf('send');
  assert.deepEqual([g.gid, g.text, g.mtype, g.peer], [1001, 'theirs', 3, undefined]);
  mesibo.stop();
});

test('getSortedProfiles: conversations from the server at connect, most recent first, reordered by messages', async () => {
  const rest: Rest = {
    calls: [],
    routes: {
      'GET /v1/conversations': () => [200, [
        { gid: 1001, name: 'Room', last_seq: 9, read_seq: 9, unread: 0 },
        { peer: 'uC', name: 'Cid', last_seq: 2, read_seq: 1, unread: 1 },
      ]],
    },
  };
  const { mesibo, ws } = await started(rest);
  const names = () => mesibo.getSortedProfiles().map((p) => p.getName());
  assert.deepEqual(names(), ['Room', 'Cid']);
  assert.equal(mesibo.getSortedProfiles()[0], mesibo.getGroupProfile(1001));
  ws.receive({ type: 'message', mid: 1, id: 'a', from: 'uC', peer: 'uA', seq: 3, pos: 1, ts: 1, mtype: 0, text: 'hi', edited: false, deleted: false });
  assert.deepEqual(names(), ['Cid', 'Room']);
  mesibo.sendMessage({ peer: 'uD' }, 2, 'new');
  assert.deepEqual(names(), ['uD', 'Cid', 'Room']);
  const fresh = await new Promise<string[]>((r) => mesibo.getSortedProfiles((l) => r(l.map((p) => p.getName()))));
  assert.deepEqual(fresh, ['Room', 'Cid'], 'cb gets the server\'s list');
  mesibo.stop();
});

test('editPin: PATCH with what is given, then Mesibo_onGroupSettings; a refusal is Mesibo_onGroupError(PERMISSION)', async () => {
  const group = { gid: 4321, name: 'Room', flags: 0, call_flags: 0x8107, video_resolution: 3, call_duration: 0, owner: 'uA', created_at: 1, membership: { flags: 0x1f, admin_flags: 0xffff } };
  const pin = { pin: '12345670', gid: 4321, flags: 0x1f, admin_flags: 0, label: 'publisher', expires_at: null as number | null, uses_left: null as number | null };
  const rest: Rest = {
    calls: [],
    routes: {
      'PATCH /v1/groups/4321/pins/12345670': (b) => {
        if (b.admin_flags) return [403, { error: { code: 'forbidden', message: 'you cannot grant admin rights you do not hold' } }];
        if (b.flags !== undefined) pin.flags = b.flags;
        if (b.uses !== undefined) pin.uses_left = b.uses;
        if (b.expires_in !== undefined) pin.expires_at = 1000 + b.expires_in * 1000;
        return [200, pin];
      },
      'GET /v1/groups/4321': () => [200, group],
      'GET /v1/groups/4321/pins': () => [200, [pin]],
    },
  };
  const { mesibo, of, rest: r } = await started(rest);
  const profile = mesibo.getGroupProfile(4321);
  profile.editPin('12345670', { flags: 0x1b }, 3600, 5);
  await until(() => of('Mesibo_onGroupSettings').length === 1);
  const patch = r.calls.find((c) => c.method === 'PATCH')!;
  assert.equal(patch.path, '/v1/groups/4321/pins/12345670');
  assert.deepEqual(patch.body, { flags: 0x1b, expires_in: 3600, uses: 5 });
  const [p1, , , list] = of('Mesibo_onGroupSettings')[0]! as Json[];
  assert.equal(p1, profile);
  assert.deepEqual(list.map((p: Json) => [p.pin, p.permissions.flags]), [['12345670', 0x1b]]);

  // Flags as a number; expiry and count 0 keep what the pin has.
  profile.editPin(12345670, 0x1f, 0, 0);
  await until(() => of('Mesibo_onGroupSettings').length === 2);
  assert.deepEqual(r.calls.filter((c) => c.method === 'PATCH').at(-1)!.body, { flags: 0x1f });

  const warn = console.warn;
  console.warn = () => {};
  try {
    profile.editPin('12345670', { adminFlags: 0x1 });
    await until(() => of('Mesibo_onGroupError').length === 1);
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(of('Mesibo_onGroupError')[0], [profile, C.MESIBO_GROUPERR_PERMISSION]);
  mesibo.stop();
});

test('connection status: a revoked token (close 4001) is SIGNOUT; a refused token is AUTHFAIL', async () => {
  const { mesibo, ws, of } = await started();
  ws.receive({ type: 'error', code: 'unauthorized', message: 'token revoked' });
  ws.drop(4001);
  await until(() => mesibo.getConnectionStatus() === C.MESIBO_STATUS_SIGNOUT);
  assert.deepEqual(of('Mesibo_onConnectionStatus').at(-1), [C.MESIBO_STATUS_SIGNOUT, 0]);
  assert.equal(FakeWebSocket.instances.length, 1, 'no reconnect');
  mesibo.stop();

  // A token refused at the upgrade (the browser sees only a close) is checked over REST → AUTHFAIL.
  FakeWebSocket.reset();
  const rest: Rest = { calls: [], routes: { 'GET /v1/me': () => [401, { error: { code: 'unauthorized', message: 'no' } }] } };
  const m2 = new Mesibo({ server: 'http://localhost:8080', WebSocket: FakeWebSocket, fetch: fakeFetch(rest), reconnect: { minDelay: 1, maxDelay: 1 }, pingInterval: 0 });
  const r = recorder();
  m2.setListener(r.l);
  m2.setAccessToken('tok-1234567890abcdef');
  m2.start();
  (await FakeWebSocket.nth(1)).drop(1006);
  (await FakeWebSocket.nth(2)).drop(1006);
  await until(() => m2.getConnectionStatus() === C.MESIBO_STATUS_AUTHFAIL);
  m2.stop();
});

test('group call: a remote stream that stops is OnHangup(p, REMOTE), whatever the reason; hasAdminPermissions before joining', async () => {
  const { mesibo, ws, gl } = await inCall();
  const p = gl.of('MesiboGroupcall_OnPublisher')[0]![0] as MesiboParticipant;
  const pl = recorder();
  p.call(true, true, pl.l);
  await until(() => ws.ofType('call_subscribe').length === 1);
  ws.reply('call_subscribe', { type: 'ok' });
  await until(() => pl.of('MesiboGroupcall_OnConnected').length === 1);
  ws.receive({ type: 'call_event', gid: 1001, event: 'unpublished', address: 'uB', sid: 0, reason: 'unpublished' });
  assert.deepEqual(pl.of('MesiboGroupcall_OnHangup'), [[p, C.MESIBOCALL_HANGUP_REASON_REMOTE]]);
  assert.deepEqual(gl.of('MesiboGroupcall_OnPublisher').at(-1), [p, false]);
  // The same for a screen the owner stops and for one that goes with its owner.
  for (const [sid, reason] of [[1, 'unpublished'], [2, 'owner_left'], [3, 'permission_revoked']] as const) {
    ws.receive({ type: 'call_event', gid: 1001, event: 'published', address: 'uB', stream: { ...cam(sid), screen: true } });
    const s = gl.of('MesiboGroupcall_OnPublisher').at(-1)![0] as MesiboParticipant;
    assert.equal(s.getSid(), sid);
    const sl = recorder();
    s.call(false, true, sl.l);
    await until(() => ws.ofType('call_subscribe').length === sid + 1);
    ws.reply('call_subscribe', { type: 'ok' });
    await until(() => sl.of('MesiboGroupcall_OnConnected').length === 1);
    ws.receive({ type: 'call_event', gid: 1001, event: 'unpublished', address: 'uB', sid, reason });
    assert.deepEqual(sl.of('MesiboGroupcall_OnHangup'), [[s, C.MESIBOCALL_HANGUP_REASON_REMOTE]], reason);
  }
  // Not yet in a call: hasAdminPermissions reads the group's admin flags.
  const other = mesibo.groupCall(null, 2002);
  assert.equal(other.hasAdminPermissions(true), false);
  mesibo.getGroupProfile(2002).permissions = { flags: 0x1f, adminFlags: C.MESIBO_ADMINFLAG_HANGUP, callFlags: 0, callDuration: 0, videoResolution: 0, expiry: 0 };
  assert.deepEqual([other.hasAdminPermissions(true), other.hasAdminPermissions(false)], [true, false]);
  mesibo.stop();
});

test('gen-1: getLocalParticipant(name, address) and (sid, name, address); call(null, elementId, on_stream, on_status) subscribes to audio and video, shows it in the element and calls both; Mesibo_onParticipant', async () => {
  const { mesibo, ws } = await started();
  const seen: unknown[][] = [];
  mesibo.setListener({ Mesibo_onParticipant: (all: unknown, latest: unknown) => seen.push([all, latest]) }); // singular spelling only
  const live = mesibo.initGroupCall();
  live.setRoom(1001);
  await until(() => ws.ofType('call_join').length === 1);
  ws.reply('call_join', {
    type: 'call_joined', gid: 1001, address: 'uA', permissions: { ...PERMS }, settings: { ...SETTINGS },
    participants: [participant('uA'), participant('uB', [cam(0)])],
  });
  await until(() => seen.length === 1);
  const [all, latest] = seen[0] as [MesiboParticipant[], MesiboParticipant[]];
  assert.equal(all.length, 1);
  const p = latest[0]!;

  const pub = live.getLocalParticipant('Ann Lee', 'uA');
  assert.deepEqual([pub.getName(), pub.getSid(), pub.isLocal(), pub.getAddress()], ['Ann Lee', 0, true, 'uA']);
  const screen = live.getLocalParticipant(1, 'Ann screen', 'uA');
  assert.deepEqual([screen.getName(), screen.getSid()], ['Ann screen', 1]);
  assert.equal(live.getLocalParticipant('Ann Lee', 'uA'), pub, 'the same publisher');

  const el: Json = { srcObject: null, autoplay: false, muted: false, play: () => Promise.resolve() };
  (globalThis as Json).document = { getElementById: (id: string) => (id === 'video-uB' ? el : null) };
  try {
    const streams: MesiboParticipant[] = [];
    const statuses: number[] = [];
    assert.equal(p.call(null, 'video-uB', (s) => streams.push(s), (_s, st) => statuses.push(st)), true);
    await until(() => ws.ofType('call_subscribe').length === 1);
    assert.deepEqual({ ...ws.lastOf('call_subscribe'), rid: undefined }, { type: 'call_subscribe', address: 'uB', sid: 0, rid: undefined }, 'audio and video');
    ws.reply('call_subscribe', { type: 'ok' });
    await until(() => statuses.length === 1);
    assert.deepEqual(statuses, [C.MESIBO_CALLSTATUS_CHANNELUP]);
    ws.receive({
      type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio m=1:video',
      tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'audio' }, { mid: '1', publisher: 'uB', sid: 0, kind: 'video' }],
    });
    await until(() => streams.length === 1 && p.getVideoView() === el);
    assert.equal(streams[0], p);
    assert.equal(el.autoplay, true);
  } finally {
    delete (globalThis as Json).document;
  }
  mesibo.stop();
});

test('sendFile: a Blob is uploaded by tus, then sent as a stored file; a URL object is sent by URL; a received stored file gets a signed fileurl', async () => {
  const rest: Rest = {
    calls: [],
    routes: {
      'POST /v1/uploads': () => [201, null, { location: '/v1/uploads/up1', 'upload-offset': '2' }],
      'PATCH /v1/uploads/up1': () => [204, null, { 'upload-offset': '5' }],
      'POST /v1/files/f9/url': () => [200, { url: '/v1/files/f9/content?expires=9&sig=ab', expires_ms: 9 }],
    },
  };
  const { mesibo, ws, of } = await started(rest);
  assert.equal(mesibo.sendFile({ peer: 'uB' }, 5, new Blob(['hello'])), 0);
  await until(() => ws.ofType('send').length === 1);
  const post = rest.calls.find((c) => c.path === '/v1/uploads')!;
  assert.equal(post.headers['Upload-Length'], '5');
  assert.equal(post.headers['Authorization'], 'Bearer tok-1234567890abcdef');
  assert.equal(post.headers['Upload-Metadata'], `filename ${btoa('file')}`);
  // The server took 2 bytes with the creation: the rest is PATCHed from there.
  const patch = rest.calls.find((c) => c.method === 'PATCH')!;
  assert.equal(patch.headers['Upload-Offset'], '2');
  assert.equal(await (patch.body as Blob).text(), 'llo');
  const sent = ws.lastOf('send');
  assert.equal(sent.peer, 'uB');
  assert.deepEqual(sent.file, { url: '', upload: 'up1', name: 'file' });

  // Mesibo's object form: by URL, no upload.
  mesibo.sendFile({ groupid: 1001 }, 6, { fileurl: 'https://files.example.org/a.png', filetype: 1, size: 10, title: 'a.png', message: 'look' });
  const byUrl = ws.lastOf('send');
  assert.deepEqual(byUrl.file, { url: 'https://files.example.org/a.png', name: 'a.png', size: 10, filetype: 1 });
  assert.equal(byUrl.text, 'look');
  assert.equal(rest.calls.filter((c) => c.path === '/v1/uploads').length, 1);
  // A URL from this server's op=upload is the stored file it names.
  const id = '5f0c3c9e0a8d4b6e9a1f2c3d4e5f6a7b';
  mesibo.sendFile({ peer: 'uB' }, 8, { fileurl: `/v1/files/${id}/content`, title: 'x.pdf' });
  assert.deepEqual(ws.lastOf('send').file, { url: `/v1/files/${id}/content`, name: 'x.pdf', upload: id });

  // A received stored file: fileurl is a signed URL on this server; a text message after it
  // is not delivered before it.
  const base = { seq: 1, pos: 1, ts: 5, mtype: 0, edited: false, deleted: false, from: 'uB', peer: 'uA' };
  ws.receive({ type: 'message', ...base, mid: 1, id: 'f', file: { url: '/v1/files/f9/content', upload: 'f9', name: 'clip.webm', size: 7, filetype: 2, mime: 'video/webm' } });
  ws.receive({ type: 'message', ...base, mid: 2, id: 't', seq: 2, pos: 2, text: 'after' });
  await until(() => of('Mesibo_onMessage').length === 2);
  const [f, t] = of('Mesibo_onMessage').map(([m]) => m as Json);
  assert.equal(f.fileurl, 'http://localhost:8080/v1/files/f9/content?expires=9&sig=ab');
  assert.equal(f.filetype, 2);
  assert.equal(f.size, 7);
  assert.equal(f.title, 'clip.webm');
  assert.equal(t.message, 'after');
  assert.equal(await mesibo.getFileUrl(f), 'http://localhost:8080/v1/files/f9/content?expires=9&sig=ab');

  // A refused upload: the message fails.
  rest.routes['POST /v1/uploads'] = () => [413, { error: { code: 'too_large', message: 'big' } }];
  mesibo.sendFile({ peer: 'uB' }, 7, new Blob(['x']));
  await until(() => of('Mesibo_onMessageStatus').some(([m]) => (m as Json).id === 7));
  const failed = of('Mesibo_onMessageStatus').find(([m]) => (m as Json).id === 7)![0] as Json;
  assert.equal(failed.status, C.MESIBO_MSGSTATUS_FAIL);
  mesibo.stop();
});
