import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChorusError, RestClient, Upload, fetchTransport, fileIdOf, type UploadRequest, type UploadResponse, type UploadTransport } from '../src/index.ts';

const ID = '5f0c3c9e0a8d4b6e9a1f2c3d4e5f6a7b';

/**
 * A tus server in memory, as docs/protocol.md 16.1 describes it: `cutAfter` makes the next PATCH
 * keep that many bytes and then break off (the transport rejects, as on a dropped connection);
 * `hold` makes PATCHes wait until aborted (to pause in the middle of one).
 */
class TusFake {
  bytes: Uint8Array | null = null;
  length = 0;
  name = '';
  deleted = false;
  log: string[] = [];
  cutAfter: number | null = null;
  hold = false;
  refuse: number | null = null;

  transport: UploadTransport = async (req: UploadRequest): Promise<UploadResponse> => {
    assert.equal(req.headers['Tus-Resumable'], '1.0.0');
    assert.equal(req.headers['Authorization'], 'Bearer tok');
    const h = (m: Record<string, string>) => (n: string) => m[n.toLowerCase()] ?? null;
    if (req.method === 'POST') {
      this.log.push('POST');
      if (this.refuse) return { status: this.refuse, header: h({}), text: '{"error":{"code":"too_large","message":"over the limit"}}' };
      this.length = Number(req.headers['Upload-Length']);
      this.name = Buffer.from(req.headers['Upload-Metadata']!.split(' ')[1]!, 'base64').toString('utf8');
      this.bytes = new Uint8Array(0);
      return { status: 201, header: h({ location: `/v1/uploads/${ID}` }), text: '' };
    }
    assert.equal(req.url, `https://s.example/v1/uploads/${ID}`);
    const stored = this.bytes!;
    if (req.method === 'HEAD') {
      this.log.push(`HEAD ${stored.length}`);
      return { status: 200, header: h({ 'upload-offset': String(stored.length), 'upload-length': String(this.length) }), text: '' };
    }
    if (req.method === 'DELETE') {
      this.log.push('DELETE');
      this.deleted = true;
      return { status: 204, header: h({}), text: '' };
    }
    const off = Number(req.headers['Upload-Offset']);
    this.log.push(`PATCH ${off}+${req.body!.size}`);
    if (off !== stored.length) return { status: 409, header: h({}), text: '{"error":{"code":"conflict","message":"offset"}}' };
    let body = new Uint8Array(await req.body!.arrayBuffer());
    if (this.hold) {
      req.onProgress?.(1);
      await new Promise<void>((_, reject) => req.signal.addEventListener('abort', () => reject(new ChorusError('network', 'aborted'))));
    }
    const cut = this.cutAfter;
    if (cut !== null) {
      this.cutAfter = null;
      body = body.slice(0, cut);
    }
    const next = new Uint8Array(stored.length + body.length);
    next.set(stored);
    next.set(body, stored.length);
    this.bytes = next;
    req.onProgress?.(body.length);
    if (cut !== null) throw new ChorusError('network', 'connection reset');
    return { status: 204, header: h({ 'upload-offset': String(next.length) }), text: '' };
  };
}

function blobOf(n: number): { blob: Blob; data: Uint8Array } {
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 31 + 7) & 0xff;
  return { blob: new Blob([data]), data };
}

const upload = (fake: TusFake, blob: Blob, extra: Record<string, unknown> = {}) =>
  new Upload('https://s.example', () => 'tok', blob, { transport: fake.transport, name: 'clip é.webm', chunkSize: 1000, retryDelays: [0, 0], ...extra });

test('an upload goes up in chunks with rising progress and resolves with the id', async () => {
  const fake = new TusFake();
  const { blob, data } = blobOf(2500);
  const up = upload(fake, blob);
  const seen: number[] = [];
  up.on('progress', (p) => {
    assert.equal(p.total, 2500);
    seen.push(p.sent);
  });
  assert.equal(await up.done, ID);
  assert.equal(up.state, 'done');
  assert.equal(fake.name, 'clip é.webm', 'filename metadata is base64 of UTF-8');
  assert.deepEqual(fake.log, ['POST', 'PATCH 0+1000', 'PATCH 1000+1000', 'PATCH 2000+500']);
  assert.deepEqual(fake.bytes, data);
  assert.equal(seen.at(-1), 2500);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `progress never goes back: ${seen}`);
});

test('a PATCH cut in the middle resumes from the offset the server reports', async () => {
  const fake = new TusFake();
  fake.cutAfter = 370;
  const { blob, data } = blobOf(2500);
  const id = await upload(fake, blob).done;
  assert.equal(id, ID);
  assert.deepEqual(fake.log, ['POST', 'PATCH 0+1000', 'HEAD 370', 'PATCH 370+1000', 'PATCH 1370+1000', 'PATCH 2370+130']);
  assert.deepEqual(fake.bytes, data, 'the stored bytes are the original ones, nothing sent twice or skipped');
});

test('pause stops in the middle of a PATCH; resume asks HEAD and continues', async () => {
  const fake = new TusFake();
  fake.hold = true;
  const { blob, data } = blobOf(1500);
  const up = upload(fake, blob);
  const states: string[] = [];
  up.on('state', (s) => states.push(s));
  while (!fake.log.includes('PATCH 0+1000')) await new Promise((r) => setTimeout(r, 1));
  up.pause();
  assert.equal(up.state, 'paused');
  await new Promise((r) => setTimeout(r, 5));
  fake.hold = false;
  up.resume();
  assert.equal(await up.done, ID);
  assert.deepEqual(states, ['paused', 'uploading', 'done']);
  assert.deepEqual(fake.log, ['POST', 'PATCH 0+1000', 'HEAD 0', 'PATCH 0+1000', 'PATCH 1000+500']);
  assert.deepEqual(fake.bytes, data);
});

test('cancel deletes the upload on the server and rejects done', async () => {
  const fake = new TusFake();
  fake.hold = true;
  const up = upload(fake, blobOf(1500).blob);
  while (!fake.log.includes('PATCH 0+1000')) await new Promise((r) => setTimeout(r, 1));
  await up.cancel();
  assert.equal(up.state, 'cancelled');
  assert.ok(fake.deleted);
  await assert.rejects(up.done, (e: ChorusError) => e.code === 'state');
});

test('a refusal is final: the error code comes from the body, nothing retried', async () => {
  const fake = new TusFake();
  fake.refuse = 413;
  const up = upload(fake, blobOf(10).blob);
  await assert.rejects(up.done, (e: ChorusError) => e.code === 'too_large' && e.httpStatus === 413 && e.message === 'over the limit');
  assert.equal(up.state, 'failed');
  assert.deepEqual(fake.log, ['POST']);
});

test('retries run out: the upload fails with network', async () => {
  const fake = new TusFake();
  let calls = 0;
  const broken: UploadTransport = async (req) => {
    if (req.method === 'PATCH' || req.method === 'HEAD') {
      calls++;
      throw new ChorusError('network', 'down');
    }
    return fake.transport(req);
  };
  const up = upload(fake, blobOf(10).blob, { transport: broken });
  await assert.rejects(up.done, (e: ChorusError) => e.code === 'network');
  assert.equal(calls, 3, 'one try and two retries (retryDelays has two)');
});

test('fetchTransport sends the headers and body and reads the answer', async () => {
  let seen: RequestInit | undefined;
  const t = fetchTransport(async (_url, init) => {
    seen = init;
    return new Response(null, { status: 204, headers: { 'Upload-Offset': '3' } });
  });
  const progress: number[] = [];
  const r = await t({ method: 'PATCH', url: 'u', headers: { A: 'b' }, body: new Blob(['abc']), onProgress: (n) => progress.push(n), signal: new AbortController().signal });
  assert.equal(r.status, 204);
  assert.equal(r.header('upload-offset'), '3');
  assert.deepEqual(seen?.headers, { A: 'b' });
  assert.deepEqual(progress, [3]);
});

test('media library, signed URLs and file ids over REST', async () => {
  const calls: string[] = [];
  const rest = new RestClient('https://s.example', 'tok', {
    fetch: async (url, init) => {
      calls.push(`${init?.method ?? 'GET'} ${url} ${init?.body ?? ''}`);
      if (url.endsWith('/url')) return new Response(JSON.stringify({ url: `/v1/files/${ID}/content?expires=9&sig=ab`, expires_ms: 9 }));
      if (init?.method === 'DELETE') return new Response(null, { status: 204 });
      if (url.includes('/media?')) return new Response(JSON.stringify({ media: [{ id: ID, gid: 1001, name: 'a', size: 1, type: 'video/webm', created_ms: 1 }], before: 'c1' }));
      if (url.endsWith('/thumbnail')) return new Response('nope', { status: 404 });
      return new Response(JSON.stringify({ id: ID, gid: 1001, name: 'a', size: 1, type: 'video/webm', created_ms: 1 }), { status: 201 });
    },
  });
  const page = await rest.media(1001, { before: 'c0', limit: 10 });
  assert.equal(page.media[0]!.id, ID);
  assert.equal(page.before, 'c1');
  assert.equal((await rest.addMedia(1001, ID)).id, ID);
  await rest.deleteMedia(1001, ID);
  const signed = await rest.fileUrl(ID);
  assert.equal(signed.url, `https://s.example/v1/files/${ID}/content?expires=9&sig=ab`, 'made absolute');
  await assert.rejects(rest.blob(`/v1/groups/1001/media/${ID}/thumbnail`), (e: ChorusError) => e.code === 'not_found' && e.httpStatus === 404);
  assert.deepEqual(calls.slice(0, 4), [
    `GET https://s.example/v1/groups/1001/media?before=c0&limit=10 `,
    `POST https://s.example/v1/groups/1001/media {"upload":"${ID}"}`,
    `DELETE https://s.example/v1/groups/1001/media/${ID} `,
    `POST https://s.example/v1/files/${ID}/url `,
  ]);

  assert.equal(fileIdOf({ url: '', upload: ID }), ID);
  assert.equal(fileIdOf({ url: `/v1/files/${ID}/content` }), ID);
  assert.equal(fileIdOf({ url: `https://s.example/v1/files/${ID}/content?expires=1&sig=2` }), ID);
  assert.equal(fileIdOf({ url: 'data:,hi' }), null);
  assert.equal(fileIdOf({ url: `https://evil.example/x/v1/files/${ID}/contentX` }), null);
});
