import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { ChorusClient, ChorusError, type GroupCall, type GroupCallOptions, type TrackEvent } from '../src/index.ts';
import { FakePeerConnection, FakeTrack, FakeWebSocket, flush, until, type Json } from './fakes.ts';

const PERMS = { publish: true, subscribe: true, list: true, call_control: true, hangup: true };
const SETTINGS = { audio: true, video: true, screen: true, simulcast: true, max_height: 720, max_duration_secs: null, max_streams: 4 };
const MUTE0 = { audio: false, video: false };
const cam = (sid = 0) => ({ sid, audio: true, video: true, screen: false, layers: 3, height: 720, muted: { ...MUTE0 } });
const participant = (address: string, streams: Json[] = []) => ({
  address, name: address.toUpperCase(), permissions: { ...PERMS }, admin_muted: { ...MUTE0 }, talking: false, streams,
});

async function joined(options: GroupCallOptions = {}, extra: Json = {}): Promise<{ c: ChorusClient; ws: FakeWebSocket; call: GroupCall }> {
  const c = new ChorusClient({
    server: 'http://localhost:8080',
    token: 'tok-1234567890abcdef',
    WebSocket: FakeWebSocket,
    RTCPeerConnection: FakePeerConnection as unknown as typeof RTCPeerConnection,
    pingInterval: 0,
    reconnect: false,
    fetch: async () => new Response('{"ticket":"tk-1","expires_in":30}', { status: 200 }),
  });
  const p = c.connect();
  const ws = await FakeWebSocket.nth(1);
  ws.handshake({ address: 'uA' });
  await p;
  const j = c.joinCall(1001, options);
  assert.deepEqual(Object.keys(ws.lastOf('call_join')).sort(), ['gid', 'rid', 'type']);
  ws.reply('call_join', {
    type: 'call_joined', gid: 1001, address: 'uA', permissions: { ...PERMS }, settings: { ...SETTINGS, ...extra.settings },
    participants: [participant('uA'), participant('uB', [cam(0)])],
    ...extra.joined,
  });
  const call = await j;
  return { c, ws, call };
}

beforeEach(() => {
  FakeWebSocket.reset();
  FakePeerConnection.reset();
});

test('roster is built from call_joined and kept up to date by events', async () => {
  const { c, ws, call } = await joined();
  assert.equal(c.groupCall, call);
  assert.deepEqual([...call.participants.keys()], ['uA', 'uB']);
  assert.equal(call.permissions.call_control, true);
  assert.equal(call.settings.max_streams, 4);
  assert.ok(call.stream('uB', 0), 'existing streams of others are known');
  assert.equal(call.stream('uA', 0), undefined, 'own streams are not remote streams');

  const seen: string[] = [];
  call.on('participant-joined', (p) => seen.push(`joined:${p.address}`));
  call.on('stream-published', (s) => seen.push(`published:${s.address}/${s.sid}:${s.name}`));
  call.on('muted', (m) => seen.push(`muted:${m.address}/${m.sid}:${m.muted.audio}`));
  call.on('talking', (t) => seen.push(`talking:${t.address}:${t.talking}`));
  call.on('speakers', (o) => seen.push(`speakers:${o.join(',')}`));
  call.on('stream-unpublished', (u) => seen.push(`unpublished:${u.address}/${u.sid}:${u.reason}`));
  call.on('participant-left', (l) => seen.push(`left:${l.participant.address}:${l.reason}`));
  call.on('participant-updated', (p) => seen.push(`updated:${p.address}`));
  call.on('subscriber', (s) => seen.push(`subscriber:${s.address}:${s.joined}`));

  const ev = (e: Json) => ws.receive({ type: 'call_event', gid: 1001, ...e });
  ev({ event: 'joined', participant: participant('uC') });
  ev({ event: 'published', address: 'uC', stream: { ...cam(1), screen: true, audio: false, layers: 1 } });
  ev({ event: 'muted', address: 'uC', sid: 1, muted: { audio: true, video: false } });
  ev({ event: 'talking', address: 'uB', talking: true });
  ev({ event: 'speakers', order: ['uB', 'uC'] });
  ev({ event: 'updated', address: 'uA', permissions: { ...PERMS, publish: false }, admin_muted: { audio: true, video: false } });
  ev({ event: 'subscriber', address: 'uB', sid: 0, joined: true });
  ev({ event: 'unpublished', address: 'uC', sid: 1, reason: 'unpublished' });
  ev({ event: 'left', address: 'uB', reason: 'lost' });
  ws.receive({ type: 'call_event', gid: 999, event: 'talking', address: 'uC', talking: true }); // another call: ignored

  assert.deepEqual(seen, [
    'joined:uC',
    'published:uC/1:UC',
    'muted:uC/1:true',
    'talking:uB:true',
    'speakers:uB,uC',
    'updated:uA',
    'subscriber:uB:true',
    'unpublished:uC/1:unpublished',
    'unpublished:uB/0:owner_left',
    'left:uB:lost',
  ]);
  assert.deepEqual([...call.participants.keys()], ['uA', 'uC']);
  assert.deepEqual(call.participants.get('uC')!.streams, []);
  assert.equal(call.permissions.publish, false, 'own permissions follow updated events');
  assert.deepEqual(call.adminMuted, { audio: true, video: false });
  assert.deepEqual(call.speakers, ['uB', 'uC']);
  assert.equal(call.participants.get('uB'), undefined);
  assert.equal(call.streams.size, 0);

  // Own `left` ends the call.
  const left: Json[] = [];
  call.on('left', (l) => left.push(l));
  ev({ event: 'left', address: 'uA', reason: 'removed', by: 'uC' });
  assert.deepEqual(left, [{ reason: 'removed', by: 'uC' }]);
  assert.equal(call.active, false);
  assert.equal(c.groupCall, null);
  c.close();
});

test('the TURN servers of call_joined go into both peer connections, after the app\'s own', async () => {
  const turn = { urls: ['turn:127.0.0.1:3478?transport=udp'], username: '1700000000:7', credential: 'c2VjcmV0' };
  const { ws, call } = await joined(
    { rtcConfig: { iceServers: [{ urls: 'stun:stun.example.org' }], iceTransportPolicy: 'relay' } },
    { joined: { ice_servers: [turn] } },
  );
  ws.receive({ type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio', tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'audio' }] });
  await until(() => ws.ofType('call_answer').length === 1);
  const sub = call.peerConnections.subscribe as unknown as FakePeerConnection;
  assert.deepEqual(sub.config, { iceServers: [{ urls: 'stun:stun.example.org' }, turn], iceTransportPolicy: 'relay' });
});

test('without ice_servers the app\'s configuration is passed as it is', async () => {
  const { ws, call } = await joined({ rtcConfig: { bundlePolicy: 'max-bundle' } });
  ws.receive({ type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio', tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'audio' }] });
  await until(() => ws.ofType('call_answer').length === 1);
  const sub = call.peerConnections.subscribe as unknown as FakePeerConnection;
  assert.deepEqual(sub.config, { bundlePolicy: 'max-bundle' });
});

test('call_offer is answered with call_answer, and ontrack maps mids to publisher/sid/kind', async () => {
  const { c, ws, call } = await joined({ autoSubscribe: { height: 360 } });
  const tracks: TrackEvent[] = [];
  const removed: TrackEvent[] = [];
  call.on('track', (t) => tracks.push(t));
  call.on('track-removed', (t) => removed.push(t));

  // autoSubscribe subscribed to uB's camera from call_joined.
  await until(() => ws.ofType('call_subscribe').length === 1);
  assert.deepEqual(ws.lastOf('call_subscribe'), { type: 'call_subscribe', address: 'uB', sid: 0, height: 360, rid: ws.lastOf('call_subscribe').rid });
  ws.reply('call_subscribe', { type: 'ok' });

  ws.receive({
    type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio m=1:video',
    tracks: [{ mid: '0', publisher: 'uB', sid: 0, kind: 'audio' }, { mid: '1', publisher: 'uB', sid: 0, kind: 'video' }],
  });
  await until(() => ws.ofType('call_answer').length === 1);
  const sub = call.peerConnections.subscribe as unknown as FakePeerConnection;
  assert.deepEqual(sub.log, ['setRemote:offer', 'setLocal:answer']);
  assert.equal(ws.lastOf('call_answer').sdp, 'v=0 answer to v=0 m=0:audio m=1:video');
  ws.reply('call_answer', { type: 'ok' });
  assert.deepEqual(tracks.map((t) => `${t.mid}:${t.publisher}/${t.sid}:${t.kind}`), ['0:uB/0:audio', '1:uB/0:video']);
  const rs = call.stream('uB', 0)!;
  assert.equal(rs.subscribed, true);
  assert.equal(rs.tracks.video, tracks[1]!.track);
  assert.equal(tracks[0]!.track.kind, 'audio');

  // uC publishes; autoSubscribe subscribes; the next offer reuses mid 1 for uC's video and drops mid 0.
  ws.receive({ type: 'call_event', gid: 1001, event: 'published', address: 'uC', stream: cam(0) });
  await until(() => ws.ofType('call_subscribe').length === 2);
  assert.equal(ws.lastOf('call_subscribe').address, 'uC');
  ws.reply('call_subscribe', { type: 'ok' });
  ws.receive({
    type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio m=1:video m=2:audio',
    tracks: [{ mid: '1', publisher: 'uC', sid: 0, kind: 'video' }, { mid: '2', publisher: 'uC', sid: 0, kind: 'audio' }],
  });
  await until(() => ws.ofType('call_answer').length === 2);
  ws.reply('call_answer', { type: 'ok' });
  assert.deepEqual(removed.map((t) => `${t.mid}:${t.publisher}:${t.kind}`).sort(), ['0:uB:audio', '1:uB:video']);
  assert.deepEqual(tracks.slice(2).map((t) => `${t.mid}:${t.publisher}/${t.sid}:${t.kind}`).sort(), ['1:uC/0:video', '2:uC/0:audio']);
  assert.equal(rs.tracks.video, null);
  assert.equal(call.stream('uC', 0)!.tracks.audio!.kind, 'audio');

  // setHeight re-sends call_subscribe with the same media choice.
  const h = call.setHeight('uC', 0, 180);
  assert.deepEqual(
    { ...ws.lastOf('call_subscribe'), rid: undefined },
    { type: 'call_subscribe', address: 'uC', sid: 0, height: 180, rid: undefined },
  );
  ws.reply('call_subscribe', { type: 'ok' });
  await h;

  // Layer events reach the stream.
  ws.receive({ type: 'call_event', gid: 1001, event: 'layer', address: 'uC', sid: 0, layer: 0 });
  assert.equal(call.stream('uC', 0)!.layer, 0);

  const l = call.leave();
  ws.reply('call_leave', { type: 'ok' });
  await l;
  assert.equal(sub.closed, true);
  c.close();
});

test('publish adds simulcast transceivers, sends the mids, applies the answer; layers → setParameters', async () => {
  const { c, ws, call } = await joined();
  const audio = new FakeTrack('audio');
  const video = new FakeTrack('video', 720);
  const p = call.publish(0, { audio: audio as unknown as MediaStreamTrack, video: video as unknown as MediaStreamTrack });
  await until(() => ws.ofType('call_publish').length === 1);
  const pub = call.peerConnections.publish as unknown as FakePeerConnection;
  const [at, vt] = pub.transceivers;
  assert.equal(at!.kind, 'audio');
  assert.equal(at!.direction, 'sendonly');
  assert.deepEqual(vt!.init.sendEncodings, [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000 },
  ]);
  const f = ws.lastOf('call_publish');
  assert.deepEqual({ ...f, rid: undefined }, {
    type: 'call_publish', rid: undefined, sid: 0, audio: true, video: true, screen: false, rids: ['q', 'h', 'f'], height: 720,
    audio_mid: at!.mid, video_mid: vt!.mid, sdp: pub.localDescription!.sdp,
  });
  assert.notEqual(f.audio_mid, f.video_mid);
  ws.reply('call_publish', { type: 'call_published', stream: cam(0), sdp: 'v=0 answer' });
  const ls = await p;
  assert.equal(ls.info.layers, 3);
  assert.deepEqual(pub.remoteDescription, { type: 'answer', sdp: 'v=0 answer' });
  assert.equal(pub.signalingState, 'stable');

  // The server says only the lowest layer is watched.
  const layers: Json[] = [];
  call.on('layers', (l) => layers.push(l));
  ws.receive({ type: 'call_event', gid: 1001, event: 'layers', sid: 0, active: [true, false, false] });
  await until(() => layers.length === 1);
  assert.deepEqual(vt!.sender.setCalls.length, 1);
  assert.deepEqual(vt!.sender.params.encodings.map((e: Json) => e.active), [true, false, false]);
  ws.receive({ type: 'call_event', gid: 1001, event: 'layers', sid: 0, active: [true, true, false] });
  await until(() => layers.length === 2);
  assert.deepEqual(vt!.sender.params.encodings.map((e: Json) => e.active), [true, true, false]);
  assert.equal(vt!.sender.params.encodings[0].rid, 'q', 'other encoding parameters are kept');

  // Mute: local track disabled and call_mute sent with only what changes.
  const m = call.mute(0, { video: true });
  assert.equal(video.enabled, false);
  assert.equal(audio.enabled, true);
  assert.deepEqual({ ...ws.lastOf('call_mute'), rid: undefined }, { type: 'call_mute', sid: 0, video: true, rid: undefined });
  ws.reply('call_mute', { type: 'ok' });
  await m;
  assert.equal(ls.info.muted.video, true);

  // A screen: one encoding, no rids.
  const screen = new FakeTrack('video', 1080);
  const sp = call.publish(1, { video: screen as unknown as MediaStreamTrack, screen: true });
  await until(() => ws.ofType('call_publish').length === 2);
  const sf = ws.lastOf('call_publish');
  assert.equal(sf.rids, undefined);
  assert.equal(sf.screen, true);
  assert.equal(sf.audio_mid, undefined);
  assert.equal(pub.transceivers[2]!.init.sendEncodings, undefined);
  ws.reply('call_publish', { type: 'call_published', stream: { ...cam(1), audio: false, screen: true, layers: 1 }, sdp: 'v=0 answer2' });
  await sp;

  // Unpublish: lines made inactive (not stopped), renegotiated with call_unpublish.
  const u = call.unpublish(1);
  await until(() => ws.ofType('call_unpublish').length === 1);
  assert.equal(pub.transceivers[2]!.stopped, false);
  assert.equal(pub.transceivers[2]!.direction, 'inactive');
  assert.equal(pub.transceivers[2]!.sender.track, null);
  assert.match(ws.lastOf('call_unpublish').sdp, /^v=0 offer#3/);
  ws.reply('call_unpublish', { type: 'call_sdp', sdp: 'v=0 answer3' });
  await u;
  assert.equal(call.published.has(1), false);
  assert.equal(pub.remoteDescription!.sdp, 'v=0 answer3');
  c.close();
});

test('a refused publish rolls back and stops its transceivers; no simulcast when the room forbids it', async () => {
  const { c, ws, call } = await joined({}, { settings: { simulcast: false } });
  const video = new FakeTrack('video');
  const p = call.publish(0, { video: video as unknown as MediaStreamTrack });
  await until(() => ws.ofType('call_publish').length === 1);
  assert.equal(ws.lastOf('call_publish').rids, undefined);
  ws.reply('call_publish', { type: 'error', code: 'forbidden', message: 'video is not allowed in this call' });
  await assert.rejects(p, (e: unknown) => e instanceof ChorusError && e.code === 'forbidden');
  const pub = call.peerConnections.publish as unknown as FakePeerConnection;
  assert.ok(pub.log.includes('setLocal:rollback'));
  assert.equal(pub.transceivers[0]!.stopped, true);
  assert.equal(call.published.size, 0);
  c.close();
});

test('a dropped connection ends the call with reason lost', async () => {
  const { c, ws, call } = await joined();
  const left: Json[] = [];
  call.on('left', (l) => left.push(l));
  ws.drop(1006);
  await flush(1);
  assert.deepEqual(left, [{ reason: 'lost' }]);
  assert.equal(c.groupCall, null);
  c.close();
});

test('attach() observes the element size and sends the height once subscribed (debounced)', async () => {
  const g = globalThis as Json;
  const observers: Json[] = [];
  class FakeVideo {
    clientHeight = 0;
    srcObject: unknown = null;
    autoplay = false;
    playsInline = false;
  }
  g.HTMLVideoElement = FakeVideo;
  g.ResizeObserver = class {
    constructor(readonly cb: () => void) {
      observers.push(this);
    }
    observe(): void {}
    disconnect(): void {
      observers.splice(observers.indexOf(this), 1);
    }
  };
  try {
    const { c, ws, call } = await joined();
    const rs = call.stream('uB', 0)!;
    const el = new FakeVideo();
    const detach = rs.attach(el as unknown as HTMLVideoElement, { debounce: 5 });
    assert.equal(el.autoplay, true);
    el.clientHeight = 240;
    observers[0].cb();
    await flush(3);
    assert.equal(ws.ofType('call_subscribe').length, 0, 'not subscribed yet: nothing sent');
    const s = rs.subscribe({ height: 180 });
    ws.reply('call_subscribe', { type: 'ok' });
    await s;
    await until(() => ws.ofType('call_subscribe').length === 2);
    assert.equal(ws.lastOf('call_subscribe').height, 240, 'the observed height follows the subscription');
    ws.reply('call_subscribe', { type: 'ok' });
    el.clientHeight = 480;
    observers[0].cb();
    observers[0].cb();
    await until(() => ws.ofType('call_subscribe').length === 3);
    await flush(3);
    assert.equal(ws.ofType('call_subscribe').length, 3, 'debounced: one request for two resizes');
    assert.equal(ws.lastOf('call_subscribe').height, 480);
    ws.reply('call_subscribe', { type: 'ok' });
    detach();
    assert.equal(observers.length, 0);
    c.close();
  } finally {
    delete g.HTMLVideoElement;
    delete g.ResizeObserver;
  }
});

test('recording: the state of call_joined, record() start/stop, recording events, a refused stop', async () => {
  const since = 1_765_000_000_000;
  const { c, ws, call } = await joined({}, { joined: { recording: { active: true, by: 'uB', since } } });
  assert.deepEqual(call.recording, { active: true, by: 'uB', since }, 'told at join, before any media');
  const seen: Json[] = [];
  call.on('recording', (r) => seen.push(r));
  ws.receive({ type: 'call_event', gid: 1001, event: 'recording', recording: { active: false, reason: 'stopped' } });
  assert.deepEqual(call.recording, { active: false, reason: 'stopped' });

  const started = call.record('start');
  assert.equal(ws.lastOf('call_record').action, 'start');
  ws.reply('call_record', { type: 'call_recording', gid: 1001, recording: { active: true, by: 'uA', since: since + 5 } });
  assert.deepEqual(await started, { active: true, by: 'uA', since: since + 5 });
  assert.equal(call.recording.by, 'uA');
  ws.receive({ type: 'call_event', gid: 1001, event: 'recording', recording: { active: true, by: 'uA', since: since + 5 } });
  assert.deepEqual(seen, [{ active: false, reason: 'stopped' }, { active: true, by: 'uA', since: since + 5 }]);

  const stopped = call.record('stop');
  ws.reply('call_record', { type: 'error', code: 'conflict', message: 'the call is not being recorded' });
  await assert.rejects(stopped, (e: unknown) => e instanceof ChorusError && e.code === 'conflict');
  c.close();
});

// ------------------------------------------------------------ live mode

const VIEWER = { publish: false, subscribe: true, list: true, call_control: false, hangup: false };

/** Joins a live call as uV, an audience member (the roster: the host uH with a camera, and uV). */
async function joinedLive(opts: { host?: boolean } = {}): Promise<{ c: ChorusClient; ws: FakeWebSocket; call: GroupCall }> {
  const c = new ChorusClient({
    server: 'http://localhost:8080',
    token: 'tok-1234567890abcdef',
    WebSocket: FakeWebSocket,
    RTCPeerConnection: FakePeerConnection as unknown as typeof RTCPeerConnection,
    pingInterval: 0,
    reconnect: false,
    fetch: async () => new Response('{"ticket":"tk-1","expires_in":30}', { status: 200 }),
  });
  const p = c.connect();
  const ws = await FakeWebSocket.nth(1);
  const me = opts.host ? 'uH' : 'uV';
  ws.handshake({ address: me });
  await p;
  const j = c.joinCall(1001, { autoSubscribe: true });
  ws.reply('call_join', {
    type: 'call_joined', gid: 1001, address: me, permissions: opts.host ? { ...PERMS } : { ...VIEWER },
    settings: { ...SETTINGS, live: true },
    participants: opts.host ? [participant('uH', [cam(0)])] : [participant('uH', [cam(0)]), { ...participant('uV'), permissions: { ...VIEWER } }],
    audience: opts.host ? 2 : 1,
  });
  return { c, ws, call: await j };
}

test('a call that is not live: live false, no audience', async () => {
  const { c, call } = await joined();
  assert.equal(call.live, false);
  assert.equal(call.onStage, false);
  assert.equal(call.audienceCount, 0);
  c.close();
});

test('live, audience side: the count, a raised hand, brought on stage to publish, sent back and the publish stops', async () => {
  const { c, ws, call } = await joinedLive();
  assert.equal(call.live, true);
  assert.equal(call.onStage, false);
  assert.equal(call.audienceCount, 1, 'the count of call_joined');
  const seen: string[] = [];
  call.on('audience', (n) => seen.push(`audience:${n}`));
  call.on('hand', (h) => seen.push(`hand:${h.address}:${h.raised}`));
  call.on('stage', (s) => seen.push(`stage:${s.onStage}`));
  call.on('participant-left', (l) => seen.push(`left:${l.participant.address}:${l.reason}`));
  call.on('stream-unpublished', (u) => seen.push(`unpublished:${u.address}/${u.sid}:${u.reason}:${u.local}`));
  const ev = (e: Json) => ws.receive({ type: 'call_event', gid: 1001, ...e });

  ev({ event: 'audience', count: 2 });
  ev({ event: 'audience', count: 2 }); // unchanged: no event
  assert.equal(call.audienceCount, 2);

  // Raising a hand: call_hand, then handRaised; the server's own echo changes nothing more.
  const r = call.raiseHand();
  assert.deepEqual({ ...ws.lastOf('call_hand'), rid: undefined }, { type: 'call_hand', raised: true, rid: undefined });
  assert.equal(call.handRaised, false, 'not before the server accepted it');
  ws.reply('call_hand', { type: 'ok' });
  await r;
  assert.equal(call.handRaised, true);
  ev({ event: 'hand', address: 'uV', name: 'UV', raised: true });

  // A refused hand (e.g. already on stage) rejects and changes nothing.
  const refused = call.raiseHand(false);
  ws.reply('call_hand', { type: 'error', code: 'conflict', message: 'only an audience member can do or be that' });
  await assert.rejects(refused, (e: unknown) => e instanceof ChorusError && e.code === 'conflict');
  assert.equal(call.handRaised, true);

  // A host brings uV on stage: the hand goes down, publish is granted, and publishing works.
  ev({ event: 'hand', address: 'uV', name: 'UV', raised: false });
  ev({ event: 'updated', address: 'uV', permissions: { ...VIEWER, publish: true }, admin_muted: { ...MUTE0 } });
  assert.equal(call.handRaised, false);
  assert.equal(call.onStage, true);
  assert.equal(call.participants.get('uV')!.permissions.publish, true);
  const audio = new FakeTrack('audio');
  const video = new FakeTrack('video', 360);
  const p = call.publish(0, { audio: audio as unknown as MediaStreamTrack, video: video as unknown as MediaStreamTrack });
  await until(() => ws.ofType('call_publish').length === 1);
  ws.reply('call_publish', { type: 'call_published', stream: cam(0), sdp: 'v=0 answer' });
  await p;
  assert.ok(call.published.has(0));
  const [at, vt] = (call.peerConnections.publish as unknown as FakePeerConnection).transceivers;

  // Sent back: the server ends the stream, then takes publish back. The lines stop sending.
  ev({ event: 'unpublished', address: 'uV', sid: 0, reason: 'permission_revoked' });
  ev({ event: 'updated', address: 'uV', permissions: { ...VIEWER }, admin_muted: { ...MUTE0 } });
  assert.equal(call.onStage, false);
  assert.equal(call.published.size, 0);
  assert.equal(call.participants.get('uV')!.streams.length, 0);
  for (const t of [at!, vt!]) {
    assert.equal(t.direction, 'inactive');
    assert.equal(t.sender.track, null);
  }
  assert.equal(call.active, true, 'still watching');
  assert.ok(call.stream('uH', 0), 'the host stream is still there');

  assert.deepEqual(seen, [
    'audience:2',
    'hand:uV:true',
    'hand:uV:false',
    'stage:true',
    'unpublished:uV/0:permission_revoked:true',
    'stage:false',
  ]);
  c.close();
});

test('live: losing the stage stops a stream the server has not ended yet', async () => {
  const { c, ws, call } = await joinedLive();
  const ev = (e: Json) => ws.receive({ type: 'call_event', gid: 1001, ...e });
  ev({ event: 'updated', address: 'uV', permissions: { ...VIEWER, publish: true }, admin_muted: { ...MUTE0 } });
  const p = call.publish(0, { audio: new FakeTrack('audio') as unknown as MediaStreamTrack });
  await until(() => ws.ofType('call_publish').length === 1);
  ws.reply('call_publish', { type: 'call_published', stream: { ...cam(0), video: false, layers: 1 }, sdp: 'v=0 answer' });
  await p;
  const ended: Json[] = [];
  call.on('stream-unpublished', (u) => ended.push({ sid: u.sid, reason: u.reason, local: u.local }));
  ev({ event: 'updated', address: 'uV', permissions: { ...VIEWER }, admin_muted: { ...MUTE0 } });
  assert.deepEqual(ended, [{ sid: 0, reason: 'permission_revoked', local: true }]);
  assert.equal(call.published.size, 0);
  const [at] = (call.peerConnections.publish as unknown as FakePeerConnection).transceivers;
  assert.equal(at!.direction, 'inactive');
  // A stray off_stage about yourself does not end the call or drop you from the roster.
  ev({ event: 'left', address: 'uV', reason: 'off_stage' });
  assert.equal(call.active, true);
  assert.ok(call.participants.has('uV'));
  c.close();
});

test('live, host side: raised hands, bring on stage, the guest\'s stream, send back (off_stage), audience pages', async () => {
  const { c, ws, call } = await joinedLive({ host: true });
  assert.equal(call.onStage, true);
  assert.equal(call.audienceCount, 2);
  const hands: string[] = [];
  call.on('hand', (h) => hands.push(`${h.address}:${h.name}:${h.raised}`));
  const ev = (e: Json) => ws.receive({ type: 'call_event', gid: 1001, ...e });

  ev({ event: 'hand', address: 'uV', name: 'Vera', raised: true });
  ev({ event: 'hand', address: 'uW', name: 'Walt', raised: true });
  ev({ event: 'hand', address: 'uW', name: 'Walt', raised: false });
  assert.deepEqual([...call.hands], [['uV', 'Vera']]);
  assert.equal(call.handRaised, false, 'others\' hands are not yours');

  // Bring on stage: call_admin stage; the server lowers the hand and announces the guest.
  const staged = call.bringOnStage('uV');
  assert.deepEqual({ ...ws.lastOf('call_admin'), rid: undefined }, { type: 'call_admin', action: 'stage', address: 'uV', rid: undefined });
  ws.reply('call_admin', { type: 'ok' });
  await staged;
  ev({ event: 'hand', address: 'uV', name: 'Vera', raised: false });
  ev({ event: 'joined', participant: { ...participant('uV'), name: 'Vera', permissions: { ...VIEWER, publish: true } } });
  ev({ event: 'audience', count: 1 });
  assert.equal(call.hands.size, 0);
  assert.equal(call.audienceCount, 1);
  ev({ event: 'published', address: 'uV', stream: cam(0) });
  assert.ok(call.stream('uV', 0));
  await until(() => ws.ofType('call_subscribe').some((f) => f.address === 'uV')); // auto-subscribed to the guest

  // Send back: call_admin unstage; the stream ends and the guest leaves the roster (not a real leave).
  const left: Json[] = [];
  call.on('participant-left', (l) => left.push({ address: l.participant.address, reason: l.reason }));
  const back = call.sendBackstage('uV');
  assert.deepEqual({ ...ws.lastOf('call_admin'), rid: undefined }, { type: 'call_admin', action: 'unstage', address: 'uV', rid: undefined });
  ws.reply('call_admin', { type: 'ok' });
  await back;
  ev({ event: 'unpublished', address: 'uV', sid: 0, reason: 'permission_revoked' });
  ev({ event: 'left', address: 'uV', reason: 'off_stage' });
  assert.deepEqual(left, [{ address: 'uV', reason: 'off_stage' }]);
  assert.equal(call.participants.has('uV'), false);
  assert.equal(call.stream('uV', 0), undefined);
  assert.equal(call.active, true);

  // Pages of the audience: the request as asked, the page as answered, the count kept.
  const page = call.audience({ after: 7, limit: 2, hands: true });
  assert.deepEqual({ ...ws.lastOf('call_audience'), rid: undefined }, { type: 'call_audience', after: 7, limit: 2, hands: true, rid: undefined });
  ws.reply('call_audience', { type: 'call_audience', gid: 1001, count: 3, members: [{ address: 'uX', name: 'X', hand: true }, { address: 'uY', name: 'Y', hand: true }], next: 9 });
  assert.deepEqual(await page, { count: 3, members: [{ address: 'uX', name: 'X', hand: true }, { address: 'uY', name: 'Y', hand: true }], next: 9 });
  assert.equal(call.audienceCount, 3);
  assert.deepEqual([...call.hands], [['uX', 'X'], ['uY', 'Y']], 'raised hands of a page join the hands list');
  const last = call.audience();
  assert.deepEqual({ ...ws.lastOf('call_audience'), rid: undefined }, { type: 'call_audience', rid: undefined });
  ws.reply('call_audience', { type: 'call_audience', gid: 1001, count: 3, members: [] });
  assert.deepEqual(await last, { count: 3, members: [] });

  assert.deepEqual(hands, ['uV:Vera:true', 'uW:Walt:true', 'uW:Walt:false', 'uV:Vera:false', 'uX:X:true', 'uY:Y:true']);
  c.close();
});
