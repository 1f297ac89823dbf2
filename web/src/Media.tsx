// The room's Media tab: the group's media library (docs/protocol.md 16.4) — upload by drag and drop or
// a file picker with progress, pause and cancel; the list with thumbnails and durations, kept live by
// `group_media` frames; a player (<video>/<audio>/<img>) on a signed URL; delete for the uploader or an admin.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ChorusError } from 'chorus-sdk';
import type { ChorusClient, MediaEntry, Upload } from 'chorus-sdk';
import { UploadBar, useSignedUrl } from './Files.tsx';
import { explain, formatBytes, formatDuration, mediaKind } from './lib.ts';

let uploadCount = 0;

/** Mesibo member flag ADMIN: a group admin may delete anyone's entry. */
const MEMBER_ADMIN = 0x1000;

/** The library, newest first: the first page, then live `group_media` changes. */
function useLibrary(client: ChorusClient, gid: number) {
  const [entries, setEntries] = useState<MediaEntry[] | null>(null);
  const [before, setBefore] = useState<string | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const off = client.on('group_media', (f) => {
      if (f.gid !== gid) return;
      setEntries((cur) => {
        const rest = (cur ?? []).filter((e) => e.id !== f.id);
        return f.action === 'added' && f.entry ? [f.entry, ...rest] : rest;
      });
    });
    client
      .media(gid)
      .then((p) => {
        if (!live) return;
        // Frames that arrived while the page loaded win over it.
        setEntries((cur) => [...(cur ?? []), ...p.media.filter((e) => !cur?.some((c) => c.id === e.id))]);
        setBefore(p.before);
      })
      .catch((e) => live && setError(explain(e instanceof ChorusError ? e.code : undefined, `Could not load the media: ${e instanceof Error ? e.message : String(e)}`)));
    return () => {
      live = false;
      off();
    };
  }, [client, gid]);
  const more = async () => {
    if (!before) return;
    const p = await client.media(gid, { before });
    setEntries((cur) => [...(cur ?? []), ...p.media.filter((e) => !cur?.some((c) => c.id === e.id))]);
    setBefore(p.before);
  };
  return { entries, error, setError, hasMore: !!before, more, setEntries };
}

/** An image entry's JPEG thumbnail (read with the token, shown as an object URL). */
function Thumb({ client, entry }: { client: ChorusClient; entry: MediaEntry }) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    if (!entry.thumbnail) return;
    let url: string | null = null;
    let live = true;
    client.rest
      .blob(entry.thumbnail)
      .then((b) => {
        if (!live) return;
        url = URL.createObjectURL(b);
        setSrc(url);
      })
      .catch(() => undefined);
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [entry.id]);
  const kind = mediaKind(entry.type);
  if (src) return <img class="thumb" src={src} alt="" data-testid="media-thumb" />;
  return <span class={`thumb kind-${kind}`}>{kind === 'video' ? '▶' : kind === 'audio' ? '♪' : kind === 'image' ? '▣' : '▤'}</span>;
}

/** Plays an entry from a signed URL: the browser asks for byte ranges as it seeks. */
function Player({ client, entry, onClose }: { client: ChorusClient; entry: MediaEntry; onClose: () => void }) {
  const { url, error } = useSignedUrl(client, entry.id);
  const kind = mediaKind(entry.type);
  return (
    <div class="player" data-testid="media-player" data-id={entry.id} data-kind={kind}>
      <div class="row">
        <b class="grow name">{entry.name}</b>
        <button class="ghost small" onClick={onClose} data-testid="media-player-close">
          Close
        </button>
      </div>
      {error && <div class="error">Cannot play this file: {error}</div>}
      {url && kind === 'video' && <video src={url} controls autoplay playsInline data-testid="media-video" />}
      {url && kind === 'audio' && <audio src={url} controls autoplay data-testid="media-audio" />}
      {url && kind === 'image' && <img src={url} alt={entry.name} data-testid="media-image" />}
      {url && kind === 'file' && (
        <a href={url} download={entry.name}>
          Download {entry.name}
        </a>
      )}
    </div>
  );
}

function EntryRow({ client, entry, canDelete, onPlay, onDelete }: { client: ChorusClient; entry: MediaEntry; canDelete: boolean; onPlay: () => void; onDelete: () => void }) {
  const details = [
    entry.duration_ms !== undefined ? formatDuration(entry.duration_ms) : null,
    entry.width && entry.height ? `${entry.width}×${entry.height}` : null,
    formatBytes(entry.size),
  ].filter(Boolean);
  return (
    <li class="media-entry" data-testid="media-entry" data-id={entry.id} data-name={entry.name} data-duration={entry.duration_ms ?? ''}>
      <button class="ghost thumb-button" onClick={onPlay} title="Play" data-testid="media-play">
        <Thumb client={client} entry={entry} />
      </button>
      <div class="grow">
        <div class="name">{entry.name}</div>
        <div class="muted" data-testid="media-details">
          {details.join(' · ')}
        </div>
      </div>
      {canDelete && (
        <button class="small danger" data-testid="media-delete" title="Remove from the room's media" onClick={onDelete}>
          Delete
        </button>
      )}
    </li>
  );
}

export function MediaPanel({ client, gid, self, memberFlags }: { client: ChorusClient; gid: number; self: string; memberFlags: number }) {
  const { entries, error, setError, hasMore, more, setEntries } = useLibrary(client, gid);
  const [uploads, setUploads] = useState<{ n: number; up: Upload }[]>([]);
  const [playing, setPlaying] = useState<MediaEntry | null>(null);
  const [over, setOver] = useState(false);
  const picker = useRef<HTMLInputElement>(null);
  const admin = (memberFlags & MEMBER_ADMIN) !== 0;

  // Each file goes up by tus, then into the library; members see it through `group_media`.
  async function add(files: FileList | null | undefined) {
    setError(null);
    for (const file of files ?? []) {
      const up = client.upload(file);
      const n = ++uploadCount;
      setUploads((u) => [...u, { n, up }]);
      void (async () => {
        try {
          const id = await up.done;
          const entry = await client.addMedia(gid, id);
          setEntries((cur) => [entry, ...(cur ?? []).filter((e) => e.id !== entry.id)]);
        } catch (e) {
          if (up.state !== 'cancelled') setError(`“${file.name}” was not added: ${explain(e instanceof ChorusError ? e.code : undefined, e instanceof Error ? e.message : String(e))}`);
        } finally {
          setUploads((u) => u.filter((x) => x.n !== n));
        }
      })();
    }
  }

  async function remove(entry: MediaEntry) {
    if (!confirm(`Remove “${entry.name}” from this room's media?`)) return;
    try {
      await client.deleteMedia(gid, entry.id);
      setEntries((cur) => (cur ?? []).filter((e) => e.id !== entry.id));
      if (playing?.id === entry.id) setPlaying(null);
    } catch (e) {
      setError(explain(e instanceof ChorusError ? e.code : undefined, `Could not delete: ${e instanceof Error ? e.message : String(e)}`));
    }
  }

  return (
    <div
      class={`media${over ? ' drop' : ''}`}
      data-testid="media"
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        void add(e.dataTransfer?.files);
      }}
    >
      <div class="dropzone" data-testid="media-dropzone">
        <span class="muted">Drop videos, audio or images here, or</span>{' '}
        <button class="small primary" data-testid="media-upload" onClick={() => picker.current?.click()}>
          Choose files
        </button>
        <input ref={picker} type="file" multiple hidden data-testid="media-file-input" onChange={(e) => {
          const input = e.currentTarget;
          void add(input.files);
          input.value = '';
        }} />
      </div>
      {uploads.map(({ n, up }) => (
        <UploadBar key={n} upload={up} />
      ))}
      {error && (
        <div class="error" role="alert" data-testid="media-error">
          {error}
        </div>
      )}
      {playing && <Player key={playing.id} client={client} entry={playing} onClose={() => setPlaying(null)} />}
      {entries === null ? (
        <p class="muted">Loading…</p>
      ) : entries.length === 0 ? (
        <p class="muted">Nothing here yet: what you add, everyone in the room can play.</p>
      ) : (
        <ul class="media-list" data-testid="media-list">
          {entries.map((e) => (
            <EntryRow key={e.id} client={client} entry={e} canDelete={e.uploader === self || admin} onPlay={() => setPlaying(e)} onDelete={() => void remove(e)} />
          ))}
        </ul>
      )}
      {hasMore && (
        <button class="small" onClick={() => void more()}>
          Older
        </button>
      )}
    </div>
  );
}
