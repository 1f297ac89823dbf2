import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ERROR_CODES,
  parseServerFrame,
  type CallEventFrame,
  type ClientFrame,
  type ServerFrame,
} from '../src/index.ts';

// Server frames copied from docs/protocol.md (§5, §14 and §15.7, with the elided `…` parts filled in).
const SERVER_EXAMPLES = [
  '{"type":"welcome","session":"1","user":{"uid":1,"address":"alice","name":"Alice"},"epoch":"T2Y-75qKxSelp6Qx","resumed":false}',
  '{"type":"synced","pos":0,"count":0,"complete":true}',
  '{"type":"sent","rid":"1","id":"7f3c1a2e-0001","mid":1,"seq":1,"pos":1,"ts":1795537948748,"status":1,"duplicate":false}',
  '{"type":"message","mid":1,"id":"7f3c1a2e-0001","from":"alice","peer":"bob","seq":1,"pos":1,"ts":1795537948748,"mtype":0,"text":"Lunch at 12?","edited":false,"deleted":false}',
  '{"type":"receipt","peer":"bob","by":"bob","status":2,"seq":1}',
  '{"type":"presence","from":"bob","peer":"alice","presence":3}',
  '{"type":"ok","rid":"3"}',
  '{"type":"group","gid":4821907,"event":"members_added","members":["u3fa9c0d1e2b4a6f7"]}',
  '{"type":"error","rid":"7","id":"7f3c1a2e-0003","code":"not_found","message":"no user with address \\"nobody\\"","status":131}',
  '{"type":"call_joined","rid":"1","gid":1001,"address":"uA","permissions":{"publish":true,"subscribe":true,"list":true,"call_control":true,"hangup":true},"settings":{"audio":true,"video":true,"screen":true,"simulcast":true,"max_height":720,"max_duration_secs":null,"max_streams":4},"participants":[{"address":"uA","name":"A","permissions":{"publish":true,"subscribe":true,"list":true,"call_control":true,"hangup":true},"admin_muted":{"audio":false,"video":false},"talking":false,"streams":[]},{"address":"uB","name":"B","permissions":{"publish":true,"subscribe":true,"list":true,"call_control":false,"hangup":false},"admin_muted":{"audio":false,"video":false},"talking":false,"streams":[{"sid":0,"audio":true,"video":true,"screen":false,"layers":3,"height":720,"muted":{"audio":false,"video":false}}]}]}',
  '{"type":"call_published","rid":"2","stream":{"sid":0,"audio":true,"video":true,"screen":false,"layers":3,"height":720,"muted":{"audio":false,"video":false}},"sdp":"v=0"}',
  '{"type":"call_offer","gid":1001,"sdp":"v=0","tracks":[{"mid":"0","publisher":"uB","sid":0,"kind":"audio"},{"mid":"1","publisher":"uB","sid":0,"kind":"video"}]}',
  '{"type":"call_event","gid":1001,"event":"layer","address":"uB","sid":0,"layer":1}',
  '{"type":"call_event","gid":1000,"event":"talking","address":"u1","talking":true}',
];

test('server frames from docs/protocol.md parse into the typed union', () => {
  const frames = SERVER_EXAMPLES.map(parseServerFrame);
  assert.deepEqual(
    frames.map((f) => f.type),
    ['welcome', 'synced', 'sent', 'message', 'receipt', 'presence', 'ok', 'group', 'error', 'call_joined', 'call_published', 'call_offer', 'call_event', 'call_event'],
  );
  const f = frames[9] as ServerFrame;
  assert.ok(f.type === 'call_joined');
  if (f.type === 'call_joined') {
    assert.equal(f.participants[1]!.streams[0]!.layers, 3);
    assert.equal(f.settings.max_duration_secs, null);
  }
  const ev = frames[12] as CallEventFrame;
  assert.ok(ev.event === 'layer' && ev.layer === 1);
  const err = frames[8]!;
  assert.ok(err.type === 'error' && ERROR_CODES.includes(err.code) && err.status === 131);
});

test('parseServerFrame rejects unknown types and missing required fields', () => {
  assert.throws(() => parseServerFrame('{"type":"nope"}'), /unknown frame type/);
  assert.throws(() => parseServerFrame('[1]'), /not a JSON object/);
  assert.throws(() => parseServerFrame('{"type":"sent","id":"a"}'), /lacks "mid"/);
  assert.throws(() => parseServerFrame('{"type":"synced","pos":"1","count":0,"complete":true}'), /synced.pos is not a number/);
});

test('every server line of the worked example (§14) parses', () => {
  const doc = fileURLToPath(new URL('../../docs/protocol.md', import.meta.url));
  if (!existsSync(doc)) return; // the SDK built outside the repository
  const lines = readFileSync(doc, 'utf8').split('\n').filter((l) => /^\w+\s+← \{/.test(l));
  assert.ok(lines.length >= 15, `found ${lines.length} lines`);
  for (const l of lines) parseServerFrame(l.slice(l.indexOf('{')));
});

test('client frames from docs/protocol.md fit the ClientFrame union', () => {
  // Compile-time check (npm run lint): each literal must be a valid ClientFrame.
  const frames: ClientFrame[] = [
    { type: 'hello' },
    { type: 'hello', resume: { epoch: 'T2Y-75qKxSelp6Qx', pos: 1 } },
    { type: 'send', rid: '1', id: '7f3c1a2e-0001', peer: 'bob', text: 'Lunch at 12?' },
    { type: 'ack', pos: 1 },
    { type: 'typing', peer: 'alice', on: true },
    { type: 'read', rid: '3', peer: 'alice', seq: 2 },
    { type: 'edit', rid: '5', mid: 1, text: 'Lunch at 12:30?' },
    { type: 'call_join', rid: '1', gid: 1001 },
    { type: 'call_publish', rid: '2', sid: 0, audio: true, video: true, rids: ['q', 'h', 'f'], height: 720, audio_mid: '0', video_mid: '1', sdp: 'v=0' },
    { type: 'call_subscribe', rid: '3', address: 'uB', sid: 0, height: 360 },
    { type: 'call_answer', rid: '4', sdp: 'v=0' },
    { type: 'call_admin', action: 'mute_all', audio: true },
  ];
  assert.equal(frames.length, 12);
  // The error codes mirror crates/proto/src/error.rs (14 codes).
  assert.equal(ERROR_CODES.length, 14);
});

test('board frames (docs/protocol.md examples) parse; one without objs is refused', () => {
  const append = parseServerFrame(
    '{"type":"board","gid":4821907,"version":7,"from":"u3fa9c0d1e2b4a6f7","action":"append","objs":[{"type":"line","x1":10,"y1":20,"x2":90,"y2":20}]}',
  );
  assert.ok(append.type === 'board');
  if (append.type === 'board') {
    assert.equal(append.action, 'append');
    assert.equal(append.version, 7);
    assert.deepEqual(append.objs, [{ type: 'line', x1: 10, y1: 20, x2: 90, y2: 20 }]);
  }
  const set = parseServerFrame('{"type":"board","gid":4821907,"version":8,"from":"u3fa9c0d1e2b4a6f7","action":"set","objs":[]}');
  assert.ok(set.type === 'board' && set.action === 'set' && set.objs.length === 0);
  assert.throws(() => parseServerFrame('{"type":"board","gid":1,"version":1,"from":"u","action":"set"}'), TypeError);
});
