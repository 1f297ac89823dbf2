// Network trouble (docs/protocol.md §15.10): ICE restarts and rejoining a lost call.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { ChorusClient, ChorusError, type GroupCall, type GroupCallOptions } from '../src/index.ts';
import { FakePeerConnection, FakeTrack, FakeWebSocket, flush, until, type Json } from './fakes.ts';

const PERMS = { publish: true, subscribe: true, list: true, call_control: false, hangup: false };
const SETTINGS = { audio: true, video: true, screen: true, simulcast: true, max_height: 720, max_duration_secs: null, max_streams: 4 };
const MUTE0 = { audio: false, video: false };
const cam = (sid = 0, muted = MUTE0) => ({ sid, audio: true, video: true, screen: false, layers: 3, height: 720, muted: { ...muted } });
const participant = (address: string, streams: Json[] = []) => ({
  address, name: address.toUpperCase(), permissions: { ...PERMS }, admin_muted: { ...MUTE0 }, talking: false, streams,
});
const joinedFrame = (participants: Json[]) => ({
  type: 'call_joined', gid: 1001, address: 'uA', permissions: { ...PERMS }, settings: { ...SETTINGS }, participants,
});

async function joined(options: GroupCallOptions = {}): Promise<{ c: ChorusClient; ws: FakeWebSocket; call: GroupCall }> {
  const c = new ChorusClient({
    server: 'http://localhost:8080',
    token: 'tok-1234567890abcdef',
    WebSocket: FakeWebSocket,
    RTCPeerConnection: FakePeerConnection as unknown as typeof RTCPeerConnection,
    pingInterval: 0,
    reconnect: { minDelay: 5, maxDelay: 5 },
    fetch: async () => new Response('{"ticket":"tk-1","expires_in":30}', { status: 200 }),
  });
  const p = c.connect();
  const ws = await FakeWebSocket.nth(1);
  ws.handshake({ address: 'uA' });
  await p;
  const j = c.joinCall(1001, options);
  ws.reply('call_join', joinedFrame([participant('uA'), participant('uB', [cam(0)]), participant('uC', [cam(0)])]));
  return { c, ws, call: await j };
}

/** Publishes sid 0 (audio + simulcast video) and answers it. */
async function publishCam(ws: FakeWebSocket, call: GroupCall, n = 1) {
  const audio = new FakeTrack('audio') as unknown as MediaStreamTrack;
  const video = new FakeTrack('video', 720) as unknown as MediaStreamTrack;
  const p = call.publish(0, { audio, video });
  await until(() => ws.ofType('call_publish').length === n);
  ws.reply('call_publish', { type: 'call_published', stream: cam(0), sdp: 'v=0 pub-answer' });
  return { ls: await p, audio, video };
}

/** Plays the subscribe connection's offer of uB's camera (mids 0, 1) and answers it. */
async function offerUB(ws: FakeWebSocket, answers: number, ufrag = 'S1') {
  ws.receive({
    type: 'call_offer', gid: 1001, sdp: `v=0 ${ufrag} m=0:audio m=1:video`,
    tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'audio' }, { mid: '1', publisher: 'uB', sid: 0, kind: 'video' }],
  });
  await until(() => ws.ofType('call_answer').length === answers);
  ws.reply('call_answer', { type: 'ok' });
}

beforeEach(() => {
  FakeWebSocket.reset();
  FakePeerConnection.reset();
});

test('a dropped WebSocket: reconnecting, then call_join again, same sids and tracks republished, subscriptions restored', async () => {
  const { c, ws, call } = await joined();
  const seen: string[] = [];
  for (const ev of ['reconnecting', 'reconnected', 'left', 'participant-left', 'participant-joined', 'stream-published', 'stream-unpublished'] as const) {
    call.on(ev, (e: Json) => seen.push(`${ev}:${JSON.stringify(e.participant?.address ?? e.reason ?? e.republished ?? e.address ?? '')}`));
  }
  const { ls, audio, video } = await publishCam(ws, call);
  const m = call.mute(0, { video: true });
  ws.reply('call_mute', { type: 'ok' });
  await m;
  const s = call.subscribe('uB', 0, { audio: false, height: 360 });
  ws.reply('call_subscribe', { type: 'ok' });
  await s;
  await offerUB(ws, 1);
  const rs = call.stream('uB', 0)!;
  const rsTracks: string[] = [];
  rs.on('track', (t) => rsTracks.push(`track:${t.kind}`));
  rs.on('track-removed', (t) => rsTracks.push(`removed:${t.kind}`));
  const oldPub = call.peerConnections.publish as unknown as FakePeerConnection;
  const oldSub = call.peerConnections.subscribe as unknown as FakePeerConnection;

  ws.drop(1006);
  assert.equal(call.state, 'reconnecting');
  assert.equal(call.active, true);
  assert.equal(c.groupCall, call, 'the call survives the drop');
  assert.equal(oldPub.closed && oldSub.closed, true);
  assert.deepEqual(rsTracks, ['removed:audio', 'removed:video']);
  await assert.rejects(call.publish(1, { video: video }), (e: unknown) => e instanceof ChorusError && e.code === 'disconnected');

  // The WebSocket comes back: call_join for the same call once synced.
  const ws2 = await FakeWebSocket.nth(2);
  ws2.open();
  ws2.receive({ type: 'welcome', session: '2', user: { uid: 1, address: 'uA', name: 'Ann' }, epoch: 'E1', resumed: true });
  await flush(2);
  assert.equal(ws2.ofType('call_join').length, 0, 'not before synced');
  ws2.receive({ type: 'synced', pos: 0, count: 0, complete: true });
  await until(() => ws2.ofType('call_join').length === 1);
  assert.equal(ws2.lastOf('call_join').gid, 1001);
  // uC left meanwhile, uD came; uB is still there (its camera now muted).
  ws2.reply('call_join', joinedFrame([participant('uA'), participant('uB', [cam(0, { audio: true, video: false })]), participant('uD', [cam(2)])]));
  await until(() => ws2.ofType('call_publish').length === 1);
  assert.equal(call.state, 'joined');
  const pub = ws2.lastOf('call_publish');
  assert.equal(pub.sid, 0);
  assert.deepEqual(pub.rids, ['q', 'h', 'f']);
  assert.deepEqual(pub.muted, { audio: false, video: true }, 'the mute state is kept');
  assert.equal(pub.height, 720);
  const newPub = call.peerConnections.publish as unknown as FakePeerConnection;
  assert.notEqual(newPub, oldPub, 'a fresh publish connection');
  assert.deepEqual(newPub.transceivers.map((t) => t.sender.track), [audio, video], 'the same tracks');
  await until(() => ws2.ofType('call_subscribe').length === 1);
  const sub = ws2.lastOf('call_subscribe');
  assert.deepEqual({ ...sub, rid: undefined }, { type: 'call_subscribe', address: 'uB', sid: 0, audio: false, height: 360, rid: undefined });
  ws2.reply('call_subscribe', { type: 'ok' });
  ws2.reply('call_publish', { type: 'call_published', stream: cam(0, { audio: false, video: true }), sdp: 'v=0 pub-answer-2' });
  await until(() => seen.some((x) => x.startsWith('reconnected')));
  assert.equal(call.published.get(0), ls, 'the same LocalStream');
  assert.equal(ls.videoTransceiver as unknown, newPub.transceivers[1], 'on the new transceivers');
  assert.equal(call.stream('uB', 0), rs, 'the same RemoteStream');
  assert.equal(rs.info.muted.audio, true);
  assert.deepEqual(seen, [
    'reconnecting:"lost"',
    'stream-unpublished:"owner_left"',
    'participant-left:"uC"',
    'participant-joined:"uD"',
    'stream-published:"uD"',
    'reconnected:[0]',
  ]);
  // The new subscribe connection's offer re-binds the RemoteStream.
  await offerUB(ws2, 1);
  assert.notEqual(call.peerConnections.subscribe, oldSub);
  assert.deepEqual(rsTracks, ['removed:audio', 'removed:video', 'track:audio', 'track:video']);
  assert.ok(rs.tracks.video);
  c.close();
  assert.equal(call.state, 'left');
});

test('recover: false ends the call when the WebSocket drops', async () => {
  const { c, ws, call } = await joined({ recover: false });
  const seen: string[] = [];
  call.on('reconnecting', () => seen.push('reconnecting'));
  call.on('left', (l) => seen.push(`left:${l.reason}`));
  ws.drop(1006);
  assert.deepEqual(seen, ['left:lost']);
  assert.equal(c.groupCall, null);
  const ws2 = await FakeWebSocket.nth(2);
  ws2.handshake({ address: 'uA' });
  await flush(3);
  assert.equal(ws2.ofType('call_join').length, 0);
  c.close();
});

test('left (lost) for oneself with the WebSocket up: call_join at once; refused: the call ends with the reason', async () => {
  const { c, ws, call } = await joined();
  const seen: string[] = [];
  call.on('reconnecting', (r) => seen.push(`reconnecting:${r.reason}`));
  call.on('left', (l) => seen.push(`left:${l.reason}`));
  call.on('error', (e) => seen.push(`error:${e.code}`));
  ws.receive({ type: 'call_event', gid: 1001, event: 'left', address: 'uA', reason: 'lost' });
  assert.equal(call.state, 'reconnecting');
  await until(() => ws.ofType('call_join').length === 2);
  ws.receive({ type: 'error', code: 'not_found', message: 'no such group', rid: ws.lastOf('call_join').rid });
  await until(() => seen.length === 3);
  assert.deepEqual(seen, ['reconnecting:lost', 'error:not_found', 'left:lost']);
  assert.equal(call.state, 'left');
  assert.equal(c.groupCall, null);
  c.close();
});

test('left for other reasons (removed, replaced) still ends the call; leave() while reconnecting ends it', async () => {
  const { c, ws, call } = await joined();
  const left: string[] = [];
  call.on('left', (l) => left.push(l.reason));
  ws.receive({ type: 'call_event', gid: 1001, event: 'left', address: 'uA', reason: 'replaced' });
  assert.deepEqual(left, ['replaced']);
  assert.equal(ws.ofType('call_join').length, 1);

  const j = c.joinCall(1001);
  ws.reply('call_join', joinedFrame([participant('uA')]));
  const call2 = await j;
  ws.drop(1006);
  assert.equal(call2.state, 'reconnecting');
  const l2 = call2.leave();
  await l2;
  assert.equal(call2.state, 'left');
  assert.equal(call2.leftReason, 'left');
  const ws2 = await FakeWebSocket.nth(2);
  ws2.handshake({ address: 'uA' });
  await flush(3);
  assert.equal(ws2.ofType('call_join').length, 0, 'no rejoin after leave()');
  c.close();
});

test('frames racing the rejoin are applied after its call_joined', async () => {
  const { c, ws, call } = await joined({ autoSubscribe: true });
  await until(() => ws.ofType('call_subscribe').length === 2);
  for (let i = 0; i < 2; i++) ws.receive({ type: 'ok', rid: ws.ofType('call_subscribe')[i].rid });
  ws.receive({ type: 'call_event', gid: 1001, event: 'left', address: 'uA', reason: 'lost' });
  await until(() => ws.ofType('call_join').length === 2);
  const seen: string[] = [];
  call.on('participant-joined', (p) => seen.push(`joined:${p.address}`));
  // The server's first frames of the new membership, overtaking the answer's processing.
  ws.receive({ type: 'call_event', gid: 1001, event: 'joined', participant: participant('uE') });
  assert.deepEqual(seen, []);
  ws.reply('call_join', joinedFrame([participant('uA'), participant('uB', [cam(0)])]));
  await until(() => seen.length === 1);
  assert.deepEqual(seen, ['joined:uE']);
  assert.ok(call.participants.has('uE'));
  assert.ok(!call.participants.has('uC'));
  c.close();
});

test('ICE disconnected for 2 s: call_restart with an ICE-restart offer, answer applied; the next at most 5 s later', async () => {
  const { c, ws, call } = await joined();
  const restarts: boolean[] = [];
  call.on('ice-restart', (r) => restarts.push(r.automatic));
  await publishCam(ws, call);
  const pub = call.peerConnections.publish as unknown as FakePeerConnection;
  pub.setIce('connected');
  pub.setIce('disconnected');
  await new Promise((r) => setTimeout(r, 1500));
  pub.setIce('connected'); // came back in time: nothing
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(ws.ofType('call_restart').length, 0);

  const t0 = Date.now();
  pub.setIce('disconnected');
  await until(() => ws.ofType('call_restart').length === 1, 3000);
  const waited = Date.now() - t0;
  assert.ok(waited >= 1900 && waited < 2600, `restarted after ${waited} ms`);
  const f = ws.lastOf('call_restart');
  assert.match(f.sdp, /ice-restart/);
  assert.deepEqual(pub.offerOptions.at(-1), { iceRestart: true });
  ws.reply('call_restart', { type: 'call_sdp', sdp: 'v=0 restart-answer' });
  await until(() => restarts.length === 1);
  assert.deepEqual(restarts, [true]);
  assert.equal(pub.remoteDescription?.sdp, 'v=0 restart-answer');
  assert.equal(pub.signalingState, 'stable');

  // Still disconnected: the next restart comes 5 s after the answer, not before.
  const t1 = Date.now();
  await until(() => ws.ofType('call_restart').length === 2, 7000);
  const gap = Date.now() - t1;
  assert.ok(gap >= 4800, `second restart after ${gap} ms`);
  ws.reply('call_restart', { type: 'call_sdp', sdp: 'v=0 restart-answer-2' });
  await until(() => restarts.length === 2);
  pub.setIce('connected');
  c.close();
});

test('restartIce(): no publish connection → no sdp; one at a time; waits for a publish in flight', async () => {
  const { c, ws, call } = await joined();
  const r1 = call.restartIce();
  const r2 = call.restartIce();
  await until(() => ws.ofType('call_restart').length === 1);
  assert.deepEqual(Object.keys(ws.lastOf('call_restart')).sort(), ['rid', 'type']);
  ws.reply('call_restart', { type: 'call_sdp' });
  await Promise.all([r1, r2]);
  assert.equal(ws.ofType('call_restart').length, 1, 'joined the restart in progress');

  // A publish in flight: the restart waits for its answer.
  const audio = new FakeTrack('audio') as unknown as MediaStreamTrack;
  const p = call.publish(0, { audio });
  await until(() => ws.ofType('call_publish').length === 1);
  const r3 = call.restartIce();
  await flush(5);
  assert.equal(ws.ofType('call_restart').length, 1);
  ws.reply('call_publish', { type: 'call_published', stream: { ...cam(0), video: false, layers: 1 }, sdp: 'v=0 pub-answer' });
  await p;
  await until(() => ws.ofType('call_restart').length === 2);
  assert.match(ws.lastOf('call_restart').sdp, /ice-restart/);
  // A refused restart rolls the offer back.
  ws.receive({ type: 'error', code: 'bad_request', message: 'no', rid: ws.lastOf('call_restart').rid });
  await assert.rejects(r3, (e: unknown) => e instanceof ChorusError && e.code === 'bad_request');
  const pub = call.peerConnections.publish as unknown as FakePeerConnection;
  assert.equal(pub.signalingState, 'stable');
  assert.ok(pub.log.includes('setLocal:rollback'));
  c.close();
});

test('_dropConnection() (test hook) closes the WebSocket and reconnects; the call rejoins', async () => {
  const { c, ws, call } = await joined();
  (c as unknown as { _dropConnection(): void })._dropConnection();
  assert.equal(ws.closedWith, 1000);
  assert.equal(c.state, 'offline');
  assert.equal(call.state, 'reconnecting');
  const ws2 = await FakeWebSocket.nth(2);
  ws2.handshake({ address: 'uA' });
  await until(() => ws2.ofType('call_join').length === 1);
  c.close();
  assert.equal(call.state, 'left');
});
