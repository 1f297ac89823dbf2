import 'fake-indexeddb/auto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageCache } from '../src/cache.js';
import { Emitter } from '../src/emitter.js';
import type { ChorusClient, ChorusClientEvents } from '../src/client.js';
import type { Message } from '../src/protocol.js';

let n = 0;
function msg(over: Partial<Message>): Message {
  n += 1;
  return { mid: n, id: `m${n}`, from: 'ann', seq: n, pos: n, ts: n, mtype: 0, edited: false, deleted: false, ...over };
}

test('messages are kept per conversation, newest first, and page back by seq', async () => {
  const cache = await MessageCache.open('t-conv');
  const g = [1, 2, 3, 4].map((seq) => msg({ gid: 1001, seq, text: `g${seq}` }));
  for (const m of g) await cache.put(m, 'ann');
  // 1:1: the partner is the other side, whoever sent.
  await cache.put(msg({ from: 'ann', peer: 'bob', seq: 1, text: 'to bob' }), 'ann');
  await cache.put(msg({ from: 'bob', peer: 'ann', seq: 2, text: 'from bob' }), 'ann');
  await cache.put(msg({ from: 'cat', peer: 'ann', seq: 1, text: 'from cat' }), 'ann');

  assert.deepEqual((await cache.messages({ gid: 1001 }, 3)).map((m) => m.text), ['g4', 'g3', 'g2']);
  assert.deepEqual((await cache.messages({ gid: 1001 }, 10, 3)).map((m) => m.text), ['g2', 'g1']);
  assert.deepEqual((await cache.messages({ peer: 'bob' })).map((m) => m.text), ['from bob', 'to bob']);
  assert.deepEqual((await cache.messages({ peer: 'cat' })).map((m) => m.text), ['from cat']);
  assert.deepEqual(await cache.messages({ gid: 9 }), []);
  const stored = (await cache.messages({ gid: 1001 }, 1))[0];
  assert.equal('conv' in (stored as object), false, 'the index key is not part of the message');

  // An edit or a deletion replaces the stored message.
  await cache.put({ ...g[3]!, text: undefined, deleted: true }, 'ann');
  const [last] = await cache.messages({ gid: 1001 }, 1);
  assert.equal(last!.deleted, true);
  assert.equal(last!.text, undefined);
  cache.close();
});

test('the cursor survives reopening, and clear empties everything', async () => {
  const a = await MessageCache.open('t-cursor');
  assert.equal(await a.cursor(), null);
  await a.setCursor({ epoch: 'E1', pos: 42 });
  await a.put(msg({ gid: 5, seq: 1 }), 'ann');
  a.close();
  const b = await MessageCache.open('t-cursor');
  assert.deepEqual(await b.cursor(), { epoch: 'E1', pos: 42 });
  await b.clear();
  assert.equal(await b.cursor(), null);
  assert.deepEqual(await b.messages({ gid: 5 }), []);
  b.close();
});

/** Just the events and the address of a client. */
class FakeClient extends Emitter<ChorusClientEvents> {
  address = 'ann';
  fire<K extends keyof ChorusClientEvents>(name: K, value: ChorusClientEvents[K]): void {
    this.emit(name, value);
  }
}

test('attach stores received and own messages and follows the cursor until stopped', async () => {
  const cache = await MessageCache.open('t-attach');
  const e = new FakeClient();
  const stop = cache.attach(e as unknown as ChorusClient);
  e.fire('message', msg({ from: 'bob', peer: 'ann', seq: 1, text: 'hi' }));
  e.fire('own-message', msg({ from: 'ann', peer: 'bob', seq: 2, text: 'hello' }));
  e.fire('cursor', { epoch: 'E', pos: 7 });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual((await cache.messages({ peer: 'bob' })).map((m) => m.text), ['hello', 'hi']);
  assert.deepEqual(await cache.cursor(), { epoch: 'E', pos: 7 });
  stop();
  e.fire('cursor', { epoch: 'E', pos: 8 });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await cache.cursor(), { epoch: 'E', pos: 7 }, 'stopped');
  cache.close();
});
