/**
 * Files for the Mesibo layer's `sendFile` and file messages: uploading a `Blob` to this server
 * (tus 1.0, docs/protocol.md section 16.1) and signed URLs of stored files (section 16.3).
 *
 * @module mesibo/files
 */
import type { ChorusClient } from '../client.js';
import type { FetchLike } from '../rest.js';

/**
 * Uploads `blob` as `name` by tus: a creation with the bytes (creation-with-upload), then PATCHes
 * of whatever the server did not take yet, from the offset it reports. Returns the upload id;
 * throws on a refusal (over the size limit or quota, a bad token) or a broken transfer.
 */
export async function uploadBlob(f: FetchLike, server: string, token: string, blob: Blob, name: string): Promise<string> {
  const head = { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream' };
  // Upload-Metadata values are base64 of UTF-8.
  let bin = '';
  for (const b of new TextEncoder().encode(name)) bin += String.fromCharCode(b);
  let res = await f(`${server}/v1/uploads`, {
    method: 'POST',
    headers: { ...head, 'Upload-Length': String(blob.size), 'Upload-Metadata': `filename ${btoa(bin)}` },
    body: blob,
  });
  if (res.status !== 201) throw new Error(`upload refused: HTTP ${res.status} ${await res.text()}`);
  const id = (res.headers.get('location') ?? '').split('/').pop() ?? '';
  if (!id) throw new Error('upload: no Location in the answer');
  let offset = Number(res.headers.get('upload-offset') ?? '0');
  while (offset < blob.size) {
    res = await f(`${server}/v1/uploads/${id}`, { method: 'PATCH', headers: { ...head, 'Upload-Offset': String(offset) }, body: blob.slice(offset) });
    const next = Number(res.headers.get('upload-offset') ?? 'NaN');
    if (res.status !== 204 || !(next > offset)) throw new Error(`upload failed at byte ${offset}: HTTP ${res.status}`);
    offset = next;
  }
  return id;
}

/** A signed, absolute URL of stored file `id` (`POST /v1/files/{id}/url`): no token needed until it expires. */
export async function signedUrl(c: ChorusClient, id: string): Promise<string> {
  const signed = await c.rest.request<{ url: string }>('POST', `/v1/files/${encodeURIComponent(id)}/url`);
  return new URL(signed.url, `${c.server}/`).toString();
}
