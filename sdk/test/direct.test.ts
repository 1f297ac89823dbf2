// 1:1 calls in the SDK (src/direct.ts, ChorusClient.call / 'incoming-call') and in the Mesibo
// layer (src/mesibo/p2p.ts: call, answer, hangup, Mesibo_onCall, Mesibo_onCallStatus), over the
// fake WebSocket / RTCPeerConnection.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { ChorusClient, ChorusError, type CallStatusFrame, type DirectCall } from '../src/index.ts';
import { Mesibo, MESIBO_CONSTANTS as C } from '../src/mesibo/index.ts';
import { FakePeerConnection, FakeTrack, FakeWebSocket, flush, until, type Json } from './fakes.ts';

const PERMS = { publish: true, subscribe: true, list: true, call_control: false, hangup: false };
const SETTINGS = { audio: true, video: true, screen: true, simulcast: true, max_height: 720, max_duration_secs: null, max_streams: 2 };
const status = (call: number, s: string, code: number, extra: Json = {}) => ({
  type: 'call_status', call, from: 'uA', to: 'uB', video: true, status: s, code, ...extra,
});
const joinedFrame = (call: number, me: string) => ({
  type: 'call_joined', gid: -call, address: me, permissions: { ...PERMS }, settings: { ...SETTINGS },
  participants: [{ address: me, name: me, permissions: { ...PERMS }, admin_muted: { audio: false, video: false }, talking: false, streams: [] }],
});

async function connected(address: string): Promise<{ c: ChorusClient; ws: FakeWebSocket }> {
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
  const ws = await FakeWebSocket.nth(FakeWebSocket.instances.length + 1);
  ws.handshake({ address });
  await p;
  return { c, ws };
}

beforeEach(() => {
  FakeWebSocket.reset();
  FakePeerConnection.reset();
});

test('call(): call_dial, statuses (even one that overtook the answer), join of room -id when answered, ended', async () => {
  const { c, ws } = await connected('uA');
  const placed = c.call('uB', { video: true });
  const dial = ws.lastOf('call_dial');
  assert.deepEqual({ ...dial, rid: undefined }, { type: 'call_dial', peer: 'uB', video: true, rid: undefined });
  // The ringing status arrives before the answer to call_dial.
  ws.receive(status(42, 'ringing', 3));
  ws.reply('call_dial', { type: 'call_dialing', call: 42, peer: 'uB', video: true });
  const call = await placed;
  assert.deepEqual([call.id, call.peer, call.incoming, call.status, call.heard, call.room], [42, 'uB', false, 'ringing', true, -42]);
  assert.deepEqual(c.directCalls, [call]);

  const seen: string[] = [];
  call.on('status', (s) => seen.push(s.status));
  ws.receive(status(42, 'answered', 5));
  assert.equal(call.status, 'answered');
  const media = call.join();
  assert.deepEqual({ ...ws.lastOf('call_join'), rid: undefined }, { type: 'call_join', gid: -42, rid: undefined });
  ws.reply('call_join', joinedFrame(42, 'uA'));
  assert.equal((await media).gid, -42);

  let ended: CallStatusFrame | null = null;
  call.on('ended', (s) => (ended = s));
  ws.receive(status(42, 'ended', 64, { by: 'uB' }));
  assert.deepEqual(seen, ['answered', 'ended']);
  assert.equal(call.ended, true);
  assert.equal(call.by, 'uB');
  assert.equal((ended as CallStatusFrame | null)?.code, 64);
  assert.deepEqual(c.directCalls, [], 'forgotten once over');
  c.close();
});

test('call() refused: ChorusError with the code and Mesibo\'s call status', async () => {
  const { c, ws } = await connected('uA');
  const placed = c.call('nobody');
  assert.equal(ws.lastOf('call_dial').video, false, 'a voice call unless asked');
  ws.reply('call_dial', { type: 'error', code: 'not_found', message: 'no user with address "nobody"', status: 0x46 });
  await assert.rejects(placed, (e: unknown) => e instanceof ChorusError && e.code === 'not_found' && e.status === 0x46);
  c.close();
});

test('incoming-call: answer sends call_accept then joins; decline; a dropped connection ends the call locally', async () => {
  const { c, ws } = await connected('uB');
  const rang: DirectCall[] = [];
  c.on('incoming-call', (call) => rang.push(call));
  ws.receive({ type: 'call_incoming', call: 7, from: 'uA', name: 'Ann', video: true });
  assert.equal(rang.length, 1);
  const call = rang[0]!;
  assert.deepEqual([call.id, call.peer, call.name, call.video, call.incoming], [7, 'uA', 'Ann', true, true]);
  const answered = call.answer();
  ws.reply('call_accept', { type: 'ok' });
  await until(() => ws.ofType('call_join').length === 1);
  assert.equal(ws.lastOf('call_join').gid, -7);
  ws.reply('call_join', joinedFrame(7, 'uB'));
  await answered;

  ws.receive({ type: 'call_incoming', call: 8, from: 'uC', name: 'Cy', video: false });
  const second = rang[1]!;
  const declined = second.decline();
  assert.equal(ws.lastOf('call_decline').call, 8);
  ws.reply('call_decline', { type: 'ok' });
  await declined;

  const ends: string[] = [];
  call.on('ended', (s) => ends.push(`${s.status}:${s.by}`));
  ws.drop();
  assert.deepEqual(ends, ['lost:uB']);
  assert.deepEqual(c.directCalls, []);
  c.close();
});

test('Mesibo: Mesibo_onCall, answer with getUserMedia tracks published in the call room, Mesibo_onCallStatus numbers, hangup', async () => {
  const nav = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  const asked: Json[] = [];
  Object.defineProperty(globalThis, 'navigator', {
    configurable: true,
    value: {
      mediaDevices: {
        getUserMedia: async (cons: Json) => {
          asked.push(cons);
          const tracks = [new FakeTrack('audio'), new FakeTrack('video')].map((t) => Object.assign(t, { stop() {} }));
          return { getAudioTracks: () => tracks.filter((t) => t.kind === 'audio'), getVideoTracks: () => tracks.filter((t) => t.kind === 'video'), getTracks: () => tracks };
        },
      },
    },
  });
  try {
    const mesibo = new Mesibo({
      server: 'http://localhost:8080',
      WebSocket: FakeWebSocket,
      RTCPeerConnection: FakePeerConnection as unknown as typeof RTCPeerConnection,
      fetch: async (url: string) =>
        new Response(url.endsWith('/v1/ws/ticket') ? '{"ticket":"tk-1","expires_in":30}' : '[]', { status: 200 }),
      reconnect: false,
      pingInterval: 0,
    });
    const log: { name: string; args: unknown[] }[] = [];
    // Gen-1 capitalisation, as in Mesibo's samples.
    mesibo.setListener({
      Mesibo_OnCall: (...args: unknown[]) => log.push({ name: 'call', args }),
      Mesibo_OnCallStatus: (...args: unknown[]) => log.push({ name: 'status', args }),
    });
    mesibo.setAccessToken('tok-1234567890abcdef');
    mesibo.start();
    const ws = await FakeWebSocket.nth(1);
    ws.handshake({ address: 'uB' });
    await until(() => mesibo.getConnectionStatus() === C.MESIBO_STATUS_ONLINE);

    ws.receive({ type: 'call_incoming', call: 9, from: 'uA', name: 'Ann', video: true });
    ws.receive(status(9, 'ringing', 3));
    assert.deepEqual(log, [{ name: 'call', args: [9, 'uA', true] }, { name: 'status', args: [9, C.MESIBO_CALLSTATUS_RINGING] }]);
    mesibo.setupVideoCall('local', 'remote', true);
    assert.equal(mesibo.answer(true), 0);
    ws.reply('call_accept', { type: 'ok' });
    await until(() => ws.ofType('call_join').length === 1);
    assert.equal(ws.lastOf('call_join').gid, -9);
    ws.reply('call_join', joinedFrame(9, 'uB'));
    await until(() => ws.ofType('call_publish').length === 1);
    assert.deepEqual([asked[0].audio, asked[0].video], [true, true]);
    const pub = ws.lastOf('call_publish');
    assert.deepEqual([pub.sid, pub.audio, pub.video, pub.rids ?? []], [0, true, true, []], 'one layer, camera and microphone');
    ws.receive(status(9, 'answered', 5));

    assert.equal(mesibo.hangup(0), 0);
    assert.equal(ws.lastOf('call_hangup').call, 9);
    ws.reply('call_hangup', { type: 'ok' });
    ws.receive(status(9, 'ended', 64, { by: 'uB' }));
    const statuses = log.filter((e) => e.name === 'status').map((e) => e.args[1]);
    assert.deepEqual(statuses, [C.MESIBO_CALLSTATUS_RINGING, C.MESIBO_CALLSTATUS_ANSWER, C.MESIBO_CALLSTATUS_COMPLETE]);

    // Calling: a refusal is reported as Mesibo_onCallStatus(0, its status).
    mesibo.setupVoiceCall('audio');
    mesibo.call('nobody');
    await until(() => ws.ofType('call_dial').length === 1);
    assert.equal(ws.lastOf('call_dial').video, false, 'setupVoiceCall: a voice call');
    ws.reply('call_dial', { type: 'error', code: 'not_found', message: 'no such user', status: 0x46 });
    await until(() => log.length === 5);
    assert.deepEqual(log[4], { name: 'status', args: [0, C.MESIBO_CALLSTATUS_INVALIDDEST] });
    mesibo.stop();
  } finally {
    if (nav) Object.defineProperty(globalThis, 'navigator', nav);
    else delete (globalThis as { navigator?: unknown }).navigator;
  }
});

test('an offer of the call just left, arriving while the 1:1 room is joined, is not applied to it', async () => {
  const { c, ws } = await connected('uB');
  const room = c.joinCall(1001);
  ws.reply('call_join', { ...joinedFrame(0, 'uB'), gid: 1001 });
  await room;
  ws.receive({ type: 'call_incoming', call: 7, from: 'uA', name: 'Ann', video: true });
  const call = c.directCalls[0]!;
  const answered = call.answer();
  ws.reply('call_accept', { type: 'ok' });
  await until(() => ws.ofType('call_join').length === 2);
  // The old room renegotiates (someone left it) before call_joined of the new one comes back.
  ws.receive({ type: 'call_offer', gid: 1001, sdp: 'v=0 m=0:audio', tracks: [{ mid: '0', publisher: 'uA', sid: 0, kind: 'audio', codec: 'opus' }] });
  ws.reply('call_join', joinedFrame(7, 'uB'));
  const media = await answered;
  assert.equal(media.gid, -7);
  await flush(20);
  assert.equal(ws.ofType('call_answer').length, 0, 'the stale offer was not answered in the new call');
  ws.receive({ type: 'call_offer', gid: -7, sdp: 'v=0 m=0:audio', tracks: [{ mid: '0', publisher: 'uA', sid: 0, kind: 'audio', codec: 'opus' }] });
  await until(() => ws.ofType('call_answer').length === 1);
  c.close();
});
