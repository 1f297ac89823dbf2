import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { ChorusClient, ChorusError, nextLink, type ChorusClientOptions, type Message } from '../src/index.ts';
import { FakeWebSocket, flush, until } from './fakes.ts';

/** A server's REST side: `POST /v1/ws/ticket` hands out tk-1, tk-2, …; anything else is `/v1/me`. */
function restFake(): { fetch: (url: string, init?: RequestInit) => Promise<Response>; tickets: { url: string; auth?: string }[] } {
  const tickets: { url: string; auth?: string }[] = [];
  return {
    tickets,
    fetch: async (url, init) => {
      if (url.endsWith('/v1/ws/ticket') && init?.method === 'POST') {
        tickets.push({ url, auth: (init.headers as Record<string, string> | undefined)?.['Authorization'] });
        return new Response(JSON.stringify({ ticket: `tk-${tickets.length}`, expires_in: 30 }), { status: 200 });
      }
      return new Response('{"uid":1,"address":"uA","name":"Ann"}', { status: 200 });
    },
  };
}

function client(extra: Partial<ChorusClientOptions> = {}): ChorusClient {
  return new ChorusClient({
    server: 'https://chat.example.org/',
    token: 'tok-1234567890abcdef',
    WebSocket: FakeWebSocket,
    reconnect: { minDelay: 1, maxDelay: 4 },
    pingInterval: 0,
    fetch: restFake().fetch,
    ...extra,
  });
}

beforeEach(() => FakeWebSocket.reset());

test('connect sends hello, handles welcome/backlog/synced, keeps the cursor and acks', async () => {
  const c = client();
  const messages: Message[] = [];
  c.on('message', (m) => messages.push(m));
  const states: string[] = [];
  c.on('connection', (e) => states.push(e.state));
  const connected = c.connect();
  const ws = await FakeWebSocket.nth(1);
  assert.equal(ws.url, 'wss://chat.example.org/v1/ws?ticket=tk-1', 'opened with a ticket, not the token');
  ws.open();
  assert.deepEqual(ws.sent, [{ type: 'hello' }], 'fresh start: hello without resume and without rid');
  ws.receive({ type: 'welcome', session: '7', user: { uid: 2, address: 'bob', name: 'Bob' }, epoch: 'T2Y', resumed: false });
  ws.receive({
    type: 'message', mid: 1, id: 'x-1', from: 'alice', peer: 'bob', seq: 1, pos: 3, ts: 1, mtype: 0,
    text: 'Lunch?', edited: false, deleted: false,
  });
  ws.receive({ type: 'synced', pos: 5, count: 1, complete: true });
  const welcome = await connected;
  assert.equal(welcome.user.address, 'bob');
  assert.equal(c.address, 'bob');
  assert.equal(c.state, 'online');
  assert.deepEqual(states, ['connecting', 'online']);
  assert.equal(messages.length, 1);
  assert.equal(messages[0]!.text, 'Lunch?');
  assert.equal((messages[0] as unknown as { type?: string }).type, undefined, 'the message event carries the Message, not the frame');
  assert.deepEqual(c.cursor, { epoch: 'T2Y', pos: 5 });
  assert.deepEqual(ws.ofType('ack'), [{ type: 'ack', pos: 5 }]);

  // A live message moves the cursor and is acked (debounced).
  ws.receive({ type: 'message', mid: 2, id: 'x-2', from: 'alice', peer: 'bob', seq: 2, pos: 9, ts: 2, mtype: 0, text: 'hi', edited: false, deleted: false });
  assert.deepEqual(c.cursor, { epoch: 'T2Y', pos: 9 });
  await until(() => ws.ofType('ack').length === 2);
  assert.deepEqual(ws.lastOf('ack'), { type: 'ack', pos: 9 });
  c.close();
});

test('a saved cursor is sent as hello.resume', async () => {
  const c = client({ cursor: { epoch: 'E1', pos: 42 } });
  c.connect().catch(() => {});
  const ws = await FakeWebSocket.nth(1);
  ws.open();
  assert.deepEqual(ws.sent[0], { type: 'hello', resume: { epoch: 'E1', pos: 42 } });
  c.close();
});

test('an unusable cursor (resumed false with reason) restarts from the new epoch', async () => {
  const c = client({ cursor: { epoch: 'OLD', pos: 9999 } });
  const p = c.connect();
  const ws = await FakeWebSocket.nth(1);
  ws.open();
  ws.receive({ type: 'welcome', session: '1', user: { uid: 1, address: 'a', name: 'A' }, epoch: 'NEW', resumed: false, reason: 'epoch_mismatch' });
  ws.receive({ type: 'synced', pos: 3, count: 0, complete: true });
  await p;
  assert.deepEqual(c.cursor, { epoch: 'NEW', pos: 3 });
  c.close();
});

test('requests carry a rid; answers resolve and error frames reject with ChorusError', async () => {
  const c = client({ requestTimeout: 50 });
  const p = c.connect();
  const ws = await FakeWebSocket.nth(1);
  ws.handshake();
  await p;

  const read = c.read({ peer: 'bob', seq: 2 });
  const rf = ws.lastOf('read');
  assert.deepEqual(Object.keys(rf).sort(), ['peer', 'rid', 'seq', 'type']);
  assert.equal(typeof rf.rid, 'string');
  ws.receive({ type: 'ok', rid: rf.rid });
  await read;

  const edit = c.edit(7, { text: 'new' });
  const ef = ws.lastOf('edit');
  assert.notEqual(ef.rid, rf.rid, 'every request gets its own rid');
  ws.receive({ type: 'error', rid: ef.rid, code: 'forbidden', message: 'not your message' });
  await assert.rejects(edit, (e: unknown) => e instanceof ChorusError && e.code === 'forbidden' && e.message === 'not your message');

  // Answers match by rid, not order.
  const a = c.delete(1);
  const b = c.delete(2);
  const [fa, fb] = ws.ofType('delete');
  ws.receive({ type: 'error', rid: fb.rid, code: 'not_found', message: 'no such message' });
  ws.receive({ type: 'ok', rid: fa.rid });
  await a;
  await assert.rejects(b, { code: 'not_found' });

  // Timeout.
  await assert.rejects(c.ping(), { code: 'timeout' });

  // An error frame without a rid is an `error` event.
  const errors: ChorusError[] = [];
  c.on('error', (e) => errors.push(e));
  c.typing({ gid: 5 });
  assert.deepEqual(ws.lastOf('typing'), { type: 'typing', gid: 5, on: true });
  ws.receive({ type: 'error', code: 'not_found', message: 'no such group' });
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.code, 'not_found');

  // A drop rejects what is pending with `disconnected`.
  const pending = c.read({ gid: 5, seq: 1 });
  ws.drop();
  await assert.rejects(pending, { code: 'disconnected' });
  c.close();
});

test('send: generated id, sent answer, and failed sends map status and id', async () => {
  const c = client();
  const p = c.connect();
  const ws = await FakeWebSocket.nth(1);
  ws.handshake();
  await p;
  const s = c.send({ peer: 'bob', text: 'Lunch at 12?' });
  const f = ws.lastOf('send');
  assert.equal(typeof f.id, 'string');
  assert.ok(f.id.length >= 1 && f.id.length <= 64);
  assert.deepEqual(Object.keys(f).sort(), ['id', 'peer', 'rid', 'text', 'type']);
  ws.receive({ type: 'sent', rid: f.rid, id: f.id, mid: 1, seq: 1, pos: 1, ts: 5, status: 1, duplicate: false });
  const sent = await s;
  assert.equal(sent.mid, 1);
  assert.deepEqual(c.cursor, { epoch: 'E1', pos: 0 }, 'the cursor is never taken from sent');

  const bad = c.send({ peer: 'nobody', text: 'x', id: 'my-id' });
  const bf = ws.lastOf('send');
  assert.equal(bf.id, 'my-id');
  ws.receive({ type: 'error', rid: bf.rid, id: 'my-id', code: 'not_found', message: 'no user', status: 131 });
  await assert.rejects(bad, (e: unknown) => e instanceof ChorusError && e.code === 'not_found' && e.status === 131 && e.id === 'my-id');
  assert.equal(c.outboxSize, 0);
  c.close();
});

test('reconnect resumes from the cursor and retries unanswered sends once with the same id', async () => {
  const c = client();
  const p = c.connect();
  const ws1 = await FakeWebSocket.nth(1);
  ws1.handshake({ epoch: 'E1', pos: 4 });
  await p;
  ws1.receive({ type: 'message', mid: 9, id: 'm', from: 'bob', peer: 'uA', seq: 3, pos: 6, ts: 1, mtype: 0, text: 'a', edited: false, deleted: false });

  const s1 = c.send({ gid: 1000, text: 'one' });
  const id1 = ws1.lastOf('send').id;
  ws1.drop(1006);
  assert.equal(c.state, 'offline');

  // Sent while offline: queued.
  const s2 = c.send({ gid: 1000, text: 'two', id: 'fixed-2' });

  const ws2 = await FakeWebSocket.nth(2);
  ws2.open();
  assert.deepEqual(ws2.sent, [{ type: 'hello', resume: { epoch: 'E1', pos: 6 } }], 'nothing but hello before synced');
  ws2.receive({ type: 'welcome', session: '2', user: { uid: 1, address: 'uA', name: 'Ann' }, epoch: 'E1', resumed: true });
  assert.equal(ws2.ofType('send').length, 0, 'outbox waits for synced');
  ws2.receive({ type: 'synced', pos: 6, count: 0, complete: true });
  const resent = ws2.ofType('send');
  assert.deepEqual(resent.map((f) => f.id), [id1, 'fixed-2'], 'each unanswered send exactly once, same ids');
  assert.equal(resent[0].text, 'one');
  ws2.receive({ type: 'sent', rid: resent[0].rid, id: id1, mid: 11, seq: 4, pos: 7, ts: 1, status: 1, duplicate: true });
  ws2.receive({ type: 'sent', rid: resent[1].rid, id: 'fixed-2', mid: 12, seq: 5, pos: 8, ts: 1, status: 1, duplicate: false });
  assert.equal((await s1).duplicate, true);
  assert.equal((await s2).mid, 12);

  // Another reconnect: nothing left to resend.
  ws2.drop(1006);
  const ws3 = await FakeWebSocket.nth(3);
  ws3.handshake({ epoch: 'E1', resumed: true, pos: 8 });
  await flush(2);
  assert.equal(ws3.ofType('send').length, 0);
  assert.deepEqual(ws3.sent[0], { type: 'hello', resume: { epoch: 'E1', pos: 6 } });
  c.close();
});

test('close 4000 reconnects at once; close 4001 stops with auth_failed', async () => {
  const c = client({ reconnect: { minDelay: 10_000, maxDelay: 10_000 } });
  const states: { state: string; retryIn?: number }[] = [];
  c.on('connection', (e) => states.push(e));
  const p = c.connect();
  (await FakeWebSocket.nth(1)).handshake();
  await p;
  FakeWebSocket.last.drop(4000);
  assert.equal(states[states.length - 1]!.retryIn, 0);
  (await FakeWebSocket.nth(2)).handshake();
  await flush(1);
  FakeWebSocket.last.receive({ type: 'error', code: 'unauthorized', message: 'session ended: the access token was revoked' });
  FakeWebSocket.last.drop(4001);
  assert.equal(c.state, 'auth_failed');
  await flush(3);
  assert.equal(FakeWebSocket.instances.length, 2, 'no reconnect after 4001');
  await assert.rejects(c.send({ peer: 'x', text: 'y' }), { code: 'unauthorized' });
});

test('close() rejects unsent messages and stops reconnecting', async () => {
  const c = client();
  const p = c.connect();
  (await FakeWebSocket.nth(1)).handshake();
  await p;
  FakeWebSocket.last.drop();
  const s = c.send({ peer: 'bob', text: 'later' });
  c.close();
  await assert.rejects(s, { code: 'closed' });
  await flush(5);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(c.state, 'closed');
});

test('each connection is opened with a fresh ticket fetched with the bearer token; the token never goes in the URL', async () => {
  const rest = restFake();
  const c = client({ fetch: rest.fetch });
  const p = c.connect();
  const ws1 = await FakeWebSocket.nth(1);
  ws1.handshake();
  await p;
  ws1.drop(1006);
  const ws2 = await FakeWebSocket.nth(2);
  assert.deepEqual([ws1.url, ws2.url], ['wss://chat.example.org/v1/ws?ticket=tk-1', 'wss://chat.example.org/v1/ws?ticket=tk-2']);
  assert.deepEqual(rest.tickets, [
    { url: 'https://chat.example.org/v1/ws/ticket', auth: 'Bearer tok-1234567890abcdef' },
    { url: 'https://chat.example.org/v1/ws/ticket', auth: 'Bearer tok-1234567890abcdef' },
  ]);
  c.close();
});

test('no ticket to be had (older server, no CORS): the token in the URL; a refused token: auth_failed without a socket', async () => {
  const noTicket = client({
    fetch: async (url) => {
      if (url.endsWith('/v1/ws/ticket')) throw new TypeError('Failed to fetch');
      return new Response('{"uid":1,"address":"uA","name":"Ann"}', { status: 200 });
    },
  });
  noTicket.connect().catch(() => {});
  assert.equal((await FakeWebSocket.nth(1)).url, 'wss://chat.example.org/v1/ws?token=tok-1234567890abcdef');
  noTicket.close();

  const older = client({ fetch: async () => new Response('{"error":{"code":"not_found","message":"no such endpoint"}}', { status: 404 }) });
  older.connect().catch(() => {});
  assert.equal((await FakeWebSocket.nth(2)).url, 'wss://chat.example.org/v1/ws?token=tok-1234567890abcdef');
  older.close();

  const states: string[] = [];
  const refused = client({
    fetch: async () => new Response('{"error":{"code":"unauthorized","message":"missing, invalid or expired access token"}}', { status: 401 }),
  });
  refused.on('connection', (e) => states.push(e.state));
  await assert.rejects(refused.connect(), { code: 'unauthorized' });
  assert.deepEqual(states, ['connecting', 'auth_failed']);
  assert.equal(FakeWebSocket.instances.length, 2, 'no socket was opened');
});

test('close() while the ticket is on its way opens nothing', async () => {
  let answer: (r: Response) => void = () => {};
  const c = client({ fetch: () => new Promise<Response>((r) => (answer = r)) });
  c.connect().catch(() => {});
  await flush(2);
  c.close();
  answer(new Response('{"ticket":"tk-late","expires_in":30}', { status: 200 }));
  await flush(5);
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(c.state, 'closed');
});

test('REST helpers send the bearer token and map error bodies', async () => {
  const calls: { url: string; init?: RequestInit }[] = [];
  const c = client({
    fetch: async (url, init) => {
      calls.push({ url, init });
      if (url.endsWith('/join')) {
        return new Response('{"error":{"code":"pin_invalid","message":"bad pin"}}', { status: 403 });
      }
      return new Response('[{"address":"uA","name":"Ann","flags":31,"admin_flags":0}]', { status: 200 });
    },
  });
  const members = await c.members(4821337);
  assert.equal(members[0]!.address, 'uA');
  assert.equal(calls[0]!.url, 'https://chat.example.org/v1/groups/4821337/members');
  assert.equal((calls[0]!.init!.headers as Record<string, string>)['Authorization'], 'Bearer tok-1234567890abcdef');
  await assert.rejects(c.joinGroup(4821337, '123'), (e: unknown) => e instanceof ChorusError && e.code === 'pin_invalid' && e.httpStatus === 403);
  assert.equal(calls[1]!.init!.body, '{"pin":"123"}');
});

test('paged lists follow the Link rel="next" pages to the end', async () => {
  const urls: string[] = [];
  const pages: Record<string, [unknown[], string | null]> = {
    '/v1/groups': [[{ gid: 3 }, { gid: 2 }], '</v1/groups?limit=2&after=20.2>; rel="next"'],
    '/v1/groups?limit=2&after=20.2': [[{ gid: 1 }], null],
    '/v1/groups/7/members': [[{ address: 'uA' }], '<https://chat.example.org/v1/groups/7/members?limit=1&after=5.uA>; rel="next"'],
    '/v1/groups/7/members?limit=1&after=5.uA': [[{ address: 'uB' }], '</v1/groups/7/members?limit=1&after=5.uA>; rel="next"'],
  };
  const c = client({
    fetch: async (url) => {
      const path = url.replace('https://chat.example.org', '');
      urls.push(path);
      const [body, link] = pages[path]!;
      return new Response(JSON.stringify(body), { status: 200, headers: link ? { Link: link } : {} });
    },
  });
  assert.deepEqual((await c.groups()).map((g) => g.gid), [3, 2, 1]);
  assert.deepEqual(urls, ['/v1/groups', '/v1/groups?limit=2&after=20.2'], 'the first request is unchanged');
  // An absolute next link is followed on the same server; a link that repeats stops the walk.
  assert.deepEqual((await c.members(7)).map((m) => m.address), ['uA', 'uB']);
  assert.equal(urls.length, 4);
});

test('nextLink reads only rel="next"', () => {
  assert.equal(nextLink(null), null);
  assert.equal(nextLink('</a?x=1>; rel="prev", </b?after=1.2>; rel="next"'), '/b?after=1.2');
  assert.equal(nextLink('</a>; rel=next'), '/a');
  assert.equal(nextLink('</a>; rel="nextish"'), null);
});
