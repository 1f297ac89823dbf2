import { useEffect, useState } from 'preact/hooks';
import { ChorusError } from 'chorus-sdk';
import type { CreatedGroup, Group } from 'chorus-sdk';
import { ADMIN, CALL, QUALITIES, callFlags, explain, inviteLink, parseInvite, qualityLabel } from './lib.ts';
import type { Session } from './main.tsx';

function Copy({ text, testid }: { text: string; testid: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="small"
      data-testid={testid}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        } catch {
          prompt('Copy this link:', text);
        }
      }}
    >
      {done ? 'Copied' : 'Copy'}
    </button>
  );
}

/** May change the room's settings: the owner, or an admin with the MODIFY right. */
function canModify(g: Group): boolean {
  const admin = g.membership?.admin_flags ?? 0;
  return (admin & (ADMIN.MODIFY | ADMIN.OWNER)) !== 0;
}

export function Rooms({ session, busy, onOpen }: { session: Session; busy: boolean; onOpen: (gid: number, pin: string | null) => void }) {
  const [groups, setGroups] = useState<Group[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState('');
  const [quality, setQuality] = useState<number>(3);
  const [audio, setAudio] = useState(true);
  const [video, setVideo] = useState(true);
  const [simulcast, setSimulcast] = useState(true);
  const [live, setLive] = useState(false);
  const [autoRecord, setAutoRecord] = useState(false);
  const [created, setCreated] = useState<CreatedGroup | null>(null);
  const [joinId, setJoinId] = useState('');
  const [joinPin, setJoinPin] = useState('');

  const load = () =>
    session.client
      .groups()
      .then(setGroups)
      .catch((e) => setError(explain(e instanceof ChorusError ? e.code : undefined, `Your rooms could not be loaded: ${String(e)}`)));
  useEffect(() => void load(), []);

  async function create(e: Event) {
    e.preventDefault();
    setError(null);
    try {
      const g = await session.client.rest.createGroup({
        name: name.trim() || 'Room',
        room: true,
        video_resolution: quality,
        call_flags: callFlags({ audio, video, screen: true, simulcast, talkDetection: true }),
        ...(live ? { live: true } : {}),
        ...(autoRecord ? { auto_record: true } : {}),
      });
      setCreated(g);
      setName('');
      void load();
    } catch (err) {
      setError(explain(err instanceof ChorusError ? err.code : undefined, `The room could not be created: ${String(err)}`));
    }
  }

  /** Turns `auto_record` on or off (admins with the MODIFY right, and the owner). */
  async function switchAutoRecord(g: Group, on: boolean) {
    setError(null);
    try {
      const updated = await session.client.rest.updateGroup(g.gid, { auto_record: on });
      setGroups((all) => all?.map((x) => (x.gid === g.gid ? { ...x, ...updated, membership: updated.membership ?? x.membership } : x)) ?? all);
    } catch (err) {
      setError(explain(err instanceof ChorusError ? err.code : undefined, `The room setting could not be changed: ${String(err)}`));
      void load();
    }
  }

  function join(e: Event) {
    e.preventDefault();
    const pasted = parseInvite(joinId);
    if (pasted) return onOpen(pasted.gid, pasted.pin ?? (joinPin.trim() || null));
    if (!/^\d+$/.test(joinId.trim())) return setError('The room id is a number (it is in the invite link after “room=”).');
    onOpen(Number(joinId.trim()), joinPin.trim() || null);
  }

  const pub = created?.pins[0];
  const view = created?.pins[1];
  return (
    <main class="rooms">
      {error && (
        <div class="error" role="alert" data-testid="error">
          {error}
        </div>
      )}
      {created && (
        <section class="card created" data-testid="room-created" data-gid={created.group.gid}>
          <h2>“{created.group.name}” is ready</h2>
          <p class="muted">Share a link: people who open it join the room after signing in.</p>
          {pub && (
            <div class="pinrow">
              <div>
                <b>Publishers</b> (camera and mic) — pin <code data-testid="pin-publisher">{pub.pin}</code>
              </div>
              <div class="linkrow">
                <input readOnly data-testid="invite-publisher" value={inviteLink(location.origin, created.group.gid, pub.pin)} onFocus={(e) => e.currentTarget.select()} />
                <Copy text={inviteLink(location.origin, created.group.gid, pub.pin)} testid="copy-publisher" />
              </div>
            </div>
          )}
          {view && (
            <div class="pinrow">
              <div>
                <b>{created.group.live ? 'Viewers' : 'View-only'}</b> (watch and chat{created.group.live ? ', raise a hand' : ''}) — pin <code data-testid="pin-viewer">{view.pin}</code>
              </div>
              <div class="linkrow">
                <input readOnly data-testid="invite-viewer" value={inviteLink(location.origin, created.group.gid, view.pin)} onFocus={(e) => e.currentTarget.select()} />
                <Copy text={inviteLink(location.origin, created.group.gid, view.pin)} testid="copy-viewer" />
              </div>
            </div>
          )}
          <div class="row">
            <button class="primary" data-testid="enter-room" onClick={() => onOpen(created.group.gid, null)}>
              Enter the room
            </button>
            <button class="ghost" onClick={() => setCreated(null)}>
              Close
            </button>
          </div>
        </section>
      )}
      <section class="card">
        <h2>My rooms</h2>
        {groups === null ? (
          <p class="muted">Loading…</p>
        ) : groups.length === 0 ? (
          <p class="muted">No rooms yet — create one, or open an invite link.</p>
        ) : (
          <ul class="roomlist" data-testid="room-list">
            {groups.map((g) => (
              <li key={g.gid} data-testid="room-item" data-gid={g.gid}>
                <span class="grow">
                  <b>{g.name}</b>
                  <span class="muted">
                    {' '}
                    #{g.gid} · {qualityLabel(g.video_resolution)}
                    {!(g.call_flags & CALL.VIDEO) ? ' · audio only' : ''}
                    {g.live ? ' · live stream' : ''}
                  </span>
                </span>
                {canModify(g) && (
                  <label class="check" title="Every call in this room is recorded from its start into the room's media, for you; a call in progress keeps its state">
                    <input
                      type="checkbox"
                      role="switch"
                      data-testid={`auto-record-${g.gid}`}
                      checked={!!g.auto_record}
                      onChange={(e) => void switchAutoRecord(g, e.currentTarget.checked)}
                    />{' '}
                    Record calls automatically
                  </label>
                )}
                <button class="small" data-testid={`open-room-${g.gid}`} disabled={busy} onClick={() => onOpen(g.gid, null)}>
                  Open
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <section class="card">
        <h2>Create a room</h2>
        <form onSubmit={create} class="form">
          <label>
            Name
            <input data-testid="room-name" value={name} placeholder="Weekly sync" onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label>
            Video quality
            <select data-testid="room-quality" value={String(quality)} onChange={(e) => setQuality(Number(e.currentTarget.value))}>
              {QUALITIES.map((q) => (
                <option key={q.value} value={String(q.value)}>
                  {q.label}
                </option>
              ))}
            </select>
          </label>
          <div class="row wrap">
            <label class="check">
              <input type="checkbox" data-testid="room-audio" checked={audio} onChange={(e) => setAudio(e.currentTarget.checked)} /> Audio
            </label>
            <label class="check">
              <input type="checkbox" data-testid="room-video" checked={video} onChange={(e) => setVideo(e.currentTarget.checked)} /> Video
            </label>
            <label class="check" title="Each camera is sent in three sizes, so everyone gets what their screen and connection can take">
              <input type="checkbox" data-testid="room-simulcast" checked={simulcast} onChange={(e) => setSimulcast(e.currentTarget.checked)} /> Adaptive quality
            </label>
            <label class="check" title="A webinar: the hosts (publisher link) are on stage; viewers (view-only link) watch and chat, unseen, and may raise a hand to be brought on stage">
              <input type="checkbox" data-testid="room-live" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} /> Live stream
            </label>
            <label class="check" title="Every call in this room is recorded from its start into the room's media, for you">
              <input type="checkbox" role="switch" data-testid="room-auto-record" checked={autoRecord} onChange={(e) => setAutoRecord(e.currentTarget.checked)} /> Record calls automatically
            </label>
          </div>
          <button class="primary" data-testid="room-create">
            Create room
          </button>
        </form>
      </section>
      <section class="card">
        <h2>Join a room</h2>
        <form onSubmit={join} class="form">
          <label>
            Room id (or the whole invite link)
            <input data-testid="join-gid" value={joinId} onInput={(e) => setJoinId(e.currentTarget.value)} />
          </label>
          <label>
            Pin
            <input data-testid="join-pin" value={joinPin} onInput={(e) => setJoinPin(e.currentTarget.value)} />
          </label>
          <button class="primary" data-testid="join-submit" disabled={busy}>
            Join
          </button>
        </form>
      </section>
    </main>
  );
}
