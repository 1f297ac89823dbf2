// Stored files in the UI: an upload's progress bar with pause/resume/cancel, and a file kept on the
// server (a chat attachment) shown through a short-lived signed URL (docs/protocol.md 16.3).
import { useEffect, useState } from 'preact/hooks';
import type { ChorusClient, SignedUrl, Upload } from 'chorus-sdk';
import { Icon } from './icons.tsx';
import { formatBytes, percent } from './lib.ts';

/** Bytes sent so far (confirmed or on the way); re-renders on every progress and state change. */
function useUpload(upload: Upload): number {
  const [sent, setSent] = useState(upload.offset);
  const [, set] = useState(0);
  useEffect(() => {
    const offs = [upload.on('progress', (p) => setSent(p.sent)), upload.on('state', () => set((n) => n + 1))];
    return () => offs.forEach((off) => off());
  }, [upload]);
  return sent;
}

export function UploadBar({ upload, label }: { upload: Upload; label?: string }) {
  const sent = useUpload(upload);
  const total = upload.file.size;
  const pct = percent(sent, total);
  return (
    <div class="upload" data-testid="upload" data-state={upload.state} data-percent={pct}>
      <div class="row">
        <span class="grow name">{label ?? upload.name}</span>
        <span class="muted">
          {upload.state === 'paused' ? 'paused · ' : upload.state === 'failed' ? 'failed · ' : ''}
          {formatBytes(sent)} / {formatBytes(total)}
        </span>
      </div>
      <div class="row">
        <progress class="grow" max={100} value={pct} data-testid="upload-progress" />
        {upload.state === 'uploading' && (
          <button class="small" type="button" data-testid="upload-pause" onClick={() => upload.pause()}>
            Pause
          </button>
        )}
        {upload.state === 'paused' && (
          <button class="small" type="button" data-testid="upload-resume" onClick={() => upload.resume()}>
            Resume
          </button>
        )}
        {(upload.state === 'uploading' || upload.state === 'paused') && (
          <button class="small danger" type="button" data-testid="upload-cancel" onClick={() => void upload.cancel()}>
            Cancel
          </button>
        )}
      </div>
    </div>
  );
}

/** A signed URL of stored file `id`, renewed when it is about to expire. */
export function useSignedUrl(client: ChorusClient, id: string | null): { url: string | null; error: string | null; stale: () => boolean; renew: () => Promise<string> } {
  const [signed, setSigned] = useState<SignedUrl | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setSigned(null);
    setError(null);
    if (!id) return;
    let live = true;
    client
      .playUrl(id)
      .then((s) => live && setSigned(s))
      .catch((e) => live && setError(e instanceof Error ? e.message : String(e)));
    return () => {
      live = false;
    };
  }, [client, id]);
  const stale = () => !signed || signed.expires_ms - Date.now() < 30_000;
  const renew = async () => {
    const s = await client.playUrl(id as string);
    setSigned(s);
    return s.url;
  };
  return { url: signed?.url ?? null, error, stale, renew };
}

/** A file kept on the server: an image preview and an Open / Download link. */
export function StoredFile({ client, id, name, mime, size, preview }: { client: ChorusClient; id: string; name: string; mime: string; size?: number; preview?: string }) {
  const { url, error, stale, renew } = useSignedUrl(client, id);
  const label = `${name}${size ? ` (${formatBytes(size)})` : ''}`;
  // A link whose signed URL has (nearly) expired gets a new one, then is followed.
  const open = (e: MouseEvent) => {
    const a = e.currentTarget as HTMLAnchorElement;
    if (a.dataset.renewed) return void delete a.dataset.renewed;
    if (!stale()) return;
    e.preventDefault();
    void renew().then((u) => {
      a.href = u;
      a.dataset.renewed = '1';
      a.click();
    });
  };
  return (
    <span class="file" data-testid="chat-file" data-file-id={id}>
      {mime.startsWith('image/') && (url || preview) && <img src={url ?? preview} alt={name} data-testid="chat-file-image" />}
      {error ? (
        <span class="muted">{label} — not available</span>
      ) : (
        <span class="row">
          <a href={url ?? '#'} target="_blank" rel="noopener" onClick={open} data-testid="chat-file-open">
            <Icon name="clip" size={14} /> {label}
          </a>
          <a href={url ?? '#'} download={name} onClick={open} data-testid="chat-file-download" title="Download">
            ⤓
          </a>
        </span>
      )}
    </span>
  );
}
