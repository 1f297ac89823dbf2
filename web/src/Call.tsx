import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import type { ConnectionEvent } from 'chorus-sdk';
import { CallController, type Tile } from './controller.ts';
import { gridShape, initials, paginate, type ConvKey } from './lib.ts';
import { ChatPanel } from './Chat.tsx';
import { MediaPanel } from './Media.tsx';
import { Icon } from './icons.tsx';
import type { JoinChoice } from './PreJoin.tsx';
import type { Session } from './main.tsx';

const PER_PAGE = 16;

function useForce(): () => void {
  const [, force] = useReducer((n: number) => n + 1, 0);
  return () => force(undefined as never);
}

function VideoTile({ tile, pinned, onPin, large }: { tile: Tile; pinned: boolean; onPin: () => void; large?: boolean }) {
  const vref = useRef<HTMLVideoElement>(null);
  const aref = useRef<HTMLAudioElement>(null);
  const rs = tile.remote;
  const hasVideo = tile.self ? !!tile.localTrack && !tile.videoOff : !!rs && !tile.videoOff;

  useEffect(() => {
    const el = vref.current;
    if (!el) return;
    if (rs) return rs.attach(el);
    el.srcObject = tile.localTrack ? new MediaStream([tile.localTrack]) : null;
    return () => {
      el.srcObject = null;
    };
    // Re-attached when the received video track changes (first arrival, re-subscribe).
  }, [rs, rs?.tracks.video, tile.localTrack, hasVideo]);

  useEffect(() => {
    const el = aref.current;
    if (!el || !rs) return;
    el.srcObject = rs.mediaStream;
    void el.play().catch(() => undefined);
    return () => {
      el.srcObject = null;
    };
  }, [rs]);

  return (
    <div
      class={`tile${tile.talking ? ' talking' : ''}${tile.screen ? ' screen' : ''}${large ? ' large' : ''}`}
      data-testid="tile"
      data-address={tile.address}
      data-sid={tile.sid}
      data-self={tile.self ? 'true' : 'false'}
      data-talking={tile.talking ? 'true' : 'false'}
    >
      {hasVideo ? (
        <video ref={vref} autoPlay muted playsInline class={tile.self && !tile.screen ? 'mirror' : ''} data-testid="tile-video" />
      ) : (
        <div class="avatar" data-testid="tile-avatar">
          <span>{initials(tile.name)}</span>
        </div>
      )}
      {rs && !tile.self && <audio ref={aref} autoPlay />}
      <div class="tile-label">
        {tile.audioMuted && !tile.screen && !tile.viewOnly && (
          <span
            class="ind"
            data-testid="tile-mic-off"
            data-admin={tile.adminMuted.audio ? 'true' : 'false'}
            title={tile.adminMuted.audio ? 'Microphone muted by an admin' : 'Microphone off'}
          >
            <Icon name="micOff" size={14} />
            {tile.adminMuted.audio ? ' admin' : ''}
          </span>
        )}
        {tile.videoOff && !tile.screen && tile.adminMuted.video && (
          <span class="ind" data-testid="tile-cam-off" data-admin="true" title="Camera stopped by an admin">
            <Icon name="camOff" size={14} /> admin
          </span>
        )}
        <span class="name">
          {tile.name}
          {tile.self && !tile.screen ? ' (you)' : ''}
        </span>
        {tile.viewOnly && <span class="badge">watching</span>}
      </div>
      <button class={`pin small${pinned ? ' on' : ''}`} data-testid="tile-pin" title={pinned ? 'Unpin' : 'Pin'} onClick={onPin}>
        <Icon name="pin" size={14} />
      </button>
    </div>
  );
}

function Grid({ tiles, pinned, setPinned }: { tiles: Tile[]; pinned: string | null; setPinned: (k: string | null) => void }) {
  const ref = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState({ w: 960, h: 540 });
  const [page, setPage] = useState(0);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setSize({ w: el.clientWidth, h: el.clientHeight }));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const p = paginate(tiles, page, PER_PAGE);
  const shape = gridShape(p.items.length, size.w, size.h);
  return (
    <div class="grid-wrap">
      <div class="grid" ref={ref} data-testid="grid" style={{ '--cols': shape.cols, '--rows': shape.rows }}>
        {p.items.map((t) => (
          <VideoTile key={t.key} tile={t} pinned={pinned === t.key} onPin={() => setPinned(pinned === t.key ? null : t.key)} />
        ))}
      </div>
      {p.pages > 1 && (
        <div class="pager">
          <button class="small" data-testid="page-prev" disabled={p.page === 0} onClick={() => setPage(p.page - 1)}>
            ‹
          </button>
          <span data-testid="page-info">
            {p.page + 1} / {p.pages}
          </span>
          <button class="small" data-testid="page-next" disabled={p.page >= p.pages - 1} onClick={() => setPage(p.page + 1)}>
            ›
          </button>
        </div>
      )}
    </div>
  );
}

function SpeakerView({ tiles, main, pinned, setPinned }: { tiles: Tile[]; main: Tile; pinned: string | null; setPinned: (k: string | null) => void }) {
  return (
    <div class="speaker" data-testid="speaker-view">
      <div class="stage">
        <VideoTile tile={main} large pinned={pinned === main.key} onPin={() => setPinned(pinned === main.key ? null : main.key)} />
      </div>
      <div class="strip">
        {tiles
          .filter((t) => t.key !== main.key)
          .map((t) => (
            <VideoTile key={t.key} tile={t} pinned={pinned === t.key} onPin={() => setPinned(pinned === t.key ? null : t.key)} />
          ))}
      </div>
    </div>
  );
}

/** Live mode, for the audience: the stage in one large player (the speaker or a shared screen), the rest in a strip. */
function LivePlayer({ tiles, main, pinned, setPinned }: { tiles: Tile[]; main: Tile | undefined; pinned: string | null; setPinned: (k: string | null) => void }) {
  return (
    <div class="live-player" data-testid="live-player">
      {main ? (
        <SpeakerView tiles={tiles} main={main} pinned={pinned} setPinned={setPinned} />
      ) : (
        <div class="center muted" data-testid="live-waiting">
          The stream has not started yet.
        </div>
      )}
    </div>
  );
}

/** Live mode, for hosts: the audience members with a hand raised, each with "Bring on stage". */
function RaisedHands({ hands, onStage }: { hands: Map<string, string>; onStage: (address: string) => void }) {
  if (hands.size === 0) return null;
  return (
    <div class="hands" data-testid="raised-hands">
      <b>Raised hands</b>
      <ul>
        {[...hands].map(([address, name]) => (
          <li key={address} data-testid="raised-hand" data-address={address}>
            <span class="grow">
              <Icon name="hand" size={14} /> {name || address}
            </span>
            <button class="small primary" data-testid="bring-on-stage" data-address={address} onClick={() => onStage(address)}>
              Bring on stage
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function connectionText(e: ConnectionEvent | null): string | null {
  if (!e || e.state === 'online' || e.state === 'idle') return null;
  if (e.state === 'connecting') return 'Reconnecting…';
  if (e.state === 'offline') return `Connection lost — reconnecting${e.retryIn ? ` in ${Math.ceil(e.retryIn / 1000)} s` : ''}…`;
  if (e.state === 'auth_failed') return 'Your session has ended — sign in again.';
  return 'Disconnected.';
}

const ENDED: Record<string, string> = {
  lost: 'The connection dropped and you left the call.',
  removed: 'An admin removed you from the call.',
  duration: 'Your time in this room is up.',
  replaced: 'You joined this call from another tab or device.',
  not_member: "You're no longer a member of this room.",
  slow: 'Your connection fell too far behind and you left the call.',
  left: 'You left the call.',
};

export function CallView({ session, gid, choice, onExit }: { session: Session; gid: number; choice: JoinChoice; onExit: () => void }) {
  const force = useForce();
  const ctl = useMemo(() => new CallController(session.client, gid, { audio: choice.audio, video: choice.video }, choice), []);
  const [conn, setConn] = useState<ConnectionEvent | null>(null);
  const [joinError, setJoinError] = useState<string | null>(null);
  const [view, setView] = useState<'grid' | 'speaker'>('grid');
  const [pinned, setPinned] = useState<string | null>(null);
  const [panel, setPanel] = useState<'chat' | 'people' | 'media' | null>(() => (window.innerWidth >= 900 ? 'chat' : null));
  const [conv, setConv] = useState<ConvKey>(`g:${gid}`);
  const [lastSpeaker, setLastSpeaker] = useState<string | null>(null);
  const [recordError, setRecordError] = useState<string | null>(null);

  const start = () =>
    ctl.start().catch((e) => setJoinError(`Could not join the call: ${e instanceof Error ? e.message : String(e)}. Check your connection and try again.`));

  useEffect(() => {
    const offs = [
      ctl.on('change', force),
      session.chat.on('change', force),
      session.client.on('connection', (e) => setConn(e)),
    ];
    void start();
    return () => {
      for (const off of offs) off();
      void ctl.leave();
    };
  }, []);

  useEffect(() => {
    const sp = ctl.call?.speakers.find((a) => a !== ctl.call?.address);
    if (sp && sp !== lastSpeaker) setLastSpeaker(sp);
  });

  const call = ctl.call;
  const tiles = ctl.tiles();
  const me = call?.address ?? '';
  const admin = !!call?.permissions.call_control;
  const canHangup = !!call?.permissions.hangup;
  const ended = ctl.ended;
  const banner = connectionText(conn);

  const mainTile =
    tiles.find((t) => t.key === pinned) ??
    tiles.find((t) => t.screen && !t.self) ??
    tiles.find((t) => t.address === lastSpeaker && t.sid === 0) ??
    tiles.find((t) => !t.self) ??
    tiles[0];

  async function rejoin() {
    ctl.resetForRejoin();
    setJoinError(null);
    await start();
  }

  async function leave() {
    await ctl.leave();
    onExit();
  }

  const participants = call ? [...call.participants.values()] : [];
  const live = !!call?.live;
  const audience = ctl.audience;
  const hostOfLive = live && admin;

  async function stageAction(address: string, on: boolean) {
    if (!call) return;
    setRecordError(null);
    try {
      await (on ? call.bringOnStage(address) : call.sendBackstage(address));
    } catch (e) {
      setRecordError(`${on ? 'Bring on stage' : 'Send back'}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const peerName = (a: string) => call?.participants.get(a)?.name || a;
  const rec = call?.recording;

  async function toggleRecord() {
    if (!call) return;
    setRecordError(null);
    try {
      await call.record(call.recording.active ? 'stop' : 'start');
    } catch (e) {
      setRecordError(`Recording: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  return (
    <div class={`call${panel ? ' with-panel' : ''}`} data-testid="call" data-gid={gid}>
      <header class="topbar">
        <span class="brand">Chorus</span>
        <span class="room-name">{choice.group?.name ?? `Room #${gid}`}</span>
        <span class="grow" />
        {live && (
          <span class="live-badge" data-testid="live-badge">
            LIVE
          </span>
        )}
        {live && (
          <span class="muted count" data-testid="viewer-count" data-count={call?.audienceCount ?? 0} title="Viewers in the audience">
            <Icon name="eye" size={16} /> {call?.audienceCount ?? 0} watching
          </span>
        )}
        {rec?.active && (
          <span
            class="rec"
            data-testid="recording"
            data-by={rec.by ?? ''}
            title={`Recorded by ${rec.by ? peerName(rec.by) : 'an admin'} since ${rec.since ? new Date(rec.since).toLocaleTimeString() : 'now'}`}
          >
            <Icon name="record" size={14} /> REC
          </span>
        )}
        <span class={`quality q-${ctl.quality}`} data-testid="quality" data-quality={ctl.quality} title={`Connection: ${ctl.quality}`}>
          <i />
          <i />
          <i />
        </span>
        <span class="muted count" data-testid="participant-count">
          <Icon name="people" size={16} /> {participants.length}
        </span>
      </header>
      {rec && !rec.active && rec.reason && rec.reason !== 'stopped' && (
        <div class="banner" role="status" data-testid="recording-stopped" data-reason={rec.reason}>
          The recording stopped:{' '}
          {rec.reason === 'duration_limit' ? 'it reached the longest recording allowed' : rec.reason === 'size_limit' ? 'a file reached the largest allowed size' : 'the server could not write it'}
          . What was recorded is in the room's media.
        </div>
      )}
      {recordError && (
        <div class="error" role="alert" data-testid="record-error">
          {recordError}
        </div>
      )}
      {banner && (
        <div class="banner" role="status" data-testid="connection-banner" data-state={conn?.state}>
          {banner}
        </div>
      )}
      {ended && (
        <div class="banner ended" role="alert" data-testid="call-ended" data-reason={ended.reason}>
          {ENDED[ended.reason] ?? 'The call ended.'}
          {ended.reason === 'lost' || ended.reason === 'replaced' || ended.reason === 'slow' ? (
            <button class="primary small" data-testid="rejoin" disabled={session.client.state !== 'online' || ctl.joining} onClick={() => void rejoin()}>
              {session.client.state === 'online' ? 'Rejoin' : 'Rejoin (waiting for the connection…)'}
            </button>
          ) : null}
          <button class="small" onClick={() => void leave()}>
            Back to my rooms
          </button>
        </div>
      )}
      {joinError && (
        <div class="error" role="alert" data-testid="error">
          {joinError}
          <button class="small" onClick={() => void rejoin()}>
            Try again
          </button>
          <button class="small" onClick={() => void leave()}>
            Back to my rooms
          </button>
        </div>
      )}
      {ctl.notice && (
        <div class="notice" data-testid="call-notice">
          {ctl.notice}
        </div>
      )}
      <div class="call-body">
        <div class="stage-area">
          {hostOfLive && call && !ended && <RaisedHands hands={call.hands} onStage={(a) => void stageAction(a, true)} />}
          {!call && !joinError ? (
            <div class="center muted">Joining…</div>
          ) : audience ? (
            <LivePlayer tiles={tiles} main={mainTile} pinned={pinned} setPinned={setPinned} />
          ) : view === 'speaker' && mainTile ? (
            <SpeakerView tiles={tiles} main={mainTile} pinned={pinned} setPinned={setPinned} />
          ) : (
            <Grid tiles={pinned ? [...tiles.filter((t) => t.key === pinned), ...tiles.filter((t) => t.key !== pinned)] : tiles} pinned={pinned} setPinned={setPinned} />
          )}
        </div>
        {panel && (
          <aside class="panel" data-testid="panel">
            <div class="tabs">
              <button class={panel === 'chat' ? 'on' : ''} data-testid="tab-chat" onClick={() => setPanel('chat')}>
                Chat
              </button>
              <button class={panel === 'people' ? 'on' : ''} data-testid="tab-people" onClick={() => setPanel('people')}>
                People ({participants.length})
              </button>
              <button class={panel === 'media' ? 'on' : ''} data-testid="tab-media" onClick={() => setPanel('media')}>
                Media
              </button>
              <span class="grow" />
              <button class="ghost small" onClick={() => setPanel(null)} aria-label="Close panel">
                <Icon name="close" size={14} />
              </button>
            </div>
            {panel === 'media' ? (
              <MediaPanel client={session.client} gid={gid} self={session.user.address} memberFlags={choice.group?.membership?.flags ?? 0} />
            ) : panel === 'chat' ? (
              <ChatPanel
                store={session.chat}
                conv={conv}
                setConv={setConv}
                gid={gid}
                self={me || session.user.address}
                nameOf={peerName}
                onCall={(peer, video) => void session.direct.place(peer, video, peerName(peer))}
              />
            ) : (
              <div class="people" data-testid="participant-list">
                {admin && (
                  <div class="row">
                    <button class="small danger" data-testid="admin-mute-all" onClick={() => void call?.admin('mute_all', { audio: true }).catch(() => undefined)}>
                      Mute everyone
                    </button>
                    <button class="small" data-testid="admin-unmute-all" onClick={() => void call?.admin('unmute_all', { audio: true }).catch(() => undefined)}>
                      Allow everyone to speak
                    </button>
                  </div>
                )}
                <ul>
                  {participants.map((p) => {
                    const cam = p.streams.find((s) => s.sid === 0);
                    const micOff = p.admin_muted.audio || !cam?.audio || !!cam?.muted.audio;
                    return (
                      <li key={p.address} data-testid="participant" data-address={p.address} data-talking={p.talking ? 'true' : 'false'}>
                        <div class="row">
                          <span class={`dot${p.talking ? ' talking' : ''}`} />
                          <b class="grow">
                            {p.name || p.address}
                            {p.address === me ? ' (you)' : ''}
                          </b>
                          {!p.permissions.publish && <span class="badge">watching</span>}
                          {p.admin_muted.audio && (
                            <span class="badge warn" data-testid="participant-admin-muted">
                              muted by admin
                            </span>
                          )}
                          {micOff && !p.admin_muted.audio && p.permissions.publish && (
                            <span title="Microphone off" data-testid="participant-mic-off">
                              <Icon name="micOff" size={14} />
                            </span>
                          )}
                        </div>
                        {p.address !== me && (
                          <div class="row wrap actions">
                            <button
                              class="small"
                              data-testid="participant-message"
                              onClick={() => {
                                setConv(`p:${p.address}`);
                                setPanel('chat');
                              }}
                            >
                              Message
                            </button>
                            {admin && (
                              <button
                                class="small"
                                data-testid={p.admin_muted.audio ? 'admin-unmute-audio' : 'admin-mute-audio'}
                                onClick={() => void call?.admin(p.admin_muted.audio ? 'unmute' : 'mute', { address: p.address, audio: true }).catch(() => undefined)}
                              >
                                {p.admin_muted.audio ? 'Allow mic' : 'Mute mic'}
                              </button>
                            )}
                            {admin && (
                              <button
                                class="small"
                                data-testid={p.admin_muted.video ? 'admin-unmute-video' : 'admin-mute-video'}
                                onClick={() => void call?.admin(p.admin_muted.video ? 'unmute' : 'mute', { address: p.address, video: true }).catch(() => undefined)}
                              >
                                {p.admin_muted.video ? 'Allow camera' : 'Stop camera'}
                              </button>
                            )}
                            {hostOfLive && p.permissions.publish && (
                              <button class="small" data-testid="send-back" data-address={p.address} onClick={() => void stageAction(p.address, false)}>
                                Send back
                              </button>
                            )}
                            {canHangup && (
                              <button
                                class="small danger"
                                data-testid="admin-remove"
                                onClick={() => {
                                  if (confirm(`Remove ${p.name || p.address} from the call?`)) void call?.admin('remove', { address: p.address }).catch(() => undefined);
                                }}
                              >
                                Remove
                              </button>
                            )}
                          </div>
                        )}
                      </li>
                    );
                  })}
                </ul>
              </div>
            )}
          </aside>
        )}
      </div>
      <footer class="controls">
        {call && ctl.canPublish && !ended && (
          <>
            <button
              class={`ctl${ctl.micOn ? '' : ' off'}`}
              data-testid="toggle-mic"
              aria-pressed={!ctl.micOn}
              disabled={!ctl.media.audio || !!call.adminMuted.audio}
              title={call.adminMuted.audio ? 'An admin muted you' : ctl.micOn ? 'Mute' : 'Unmute'}
              onClick={() => void ctl.toggleMic()}
            >
              <Icon name={ctl.micOn && !call.adminMuted.audio ? 'mic' : 'micOff'} />
              <span>{call.adminMuted.audio ? 'Muted by admin' : ctl.micOn ? 'Mute' : 'Unmute'}</span>
            </button>
            <button
              class={`ctl${ctl.camOn ? '' : ' off'}`}
              data-testid="toggle-cam"
              aria-pressed={!ctl.camOn}
              disabled={!ctl.media.video || !!call.adminMuted.video}
              onClick={() => void ctl.toggleCam()}
            >
              <Icon name={ctl.camOn ? 'cam' : 'camOff'} />
              <span>{!ctl.media.video ? 'No camera' : ctl.camOn ? 'Stop video' : 'Start video'}</span>
            </button>
            {call.settings.screen && (
              <button class="ctl" data-testid="share-screen" onClick={() => void ctl.shareScreen()}>
                <Icon name="screen" />
                <span>Share screen</span>
              </button>
            )}
            {ctl.screenSids.map((sid) => (
              <button key={sid} class="ctl off" data-testid="stop-screen" data-sid={sid} onClick={() => void ctl.stopScreen(sid)}>
                <Icon name="stop" />
                <span>Stop screen {sid}</span>
              </button>
            ))}
          </>
        )}
        {call && !ctl.canPublish && !ended && (
          <span class="muted watching" data-testid="watching">
            Watching
          </span>
        )}
        {call && audience && !ended && (
          <button
            class={`ctl${call.handRaised ? ' on' : ''}`}
            data-testid="raise-hand"
            aria-pressed={call.handRaised}
            title={call.handRaised ? 'Lower your hand' : 'Ask the hosts to bring you on stage'}
            onClick={() => void ctl.toggleHand()}
          >
            <Icon name="hand" />
            <span>{call.handRaised ? 'Lower hand' : 'Raise hand'}</span>
          </button>
        )}
        {!audience && (
          <button class="ctl" data-testid="toggle-view" onClick={() => setView(view === 'grid' ? 'speaker' : 'grid')}>
            <Icon name={view === 'grid' ? 'speaker' : 'grid'} />
            <span>{view === 'grid' ? 'Speaker view' : 'Grid view'}</span>
          </button>
        )}
        <button class="ctl" data-testid="toggle-chat" onClick={() => setPanel(panel === 'chat' ? null : 'chat')}>
          <Icon name="chat" />
          <span>Chat{[...session.chat.unread.values()].reduce((a, b) => a + b, 0) ? ` (${[...session.chat.unread.values()].reduce((a, b) => a + b, 0)})` : ''}</span>
        </button>
        <button class="ctl" data-testid="toggle-people" onClick={() => setPanel(panel === 'people' ? null : 'people')}>
          <Icon name="people" />
          <span>People</span>
        </button>
        {call && admin && !ended && (
          <button class={`ctl${rec?.active ? ' off' : ''}`} data-testid="toggle-record" aria-pressed={!!rec?.active} onClick={() => void toggleRecord()}>
            <Icon name="record" />
            <span>{rec?.active ? 'Stop recording' : 'Record'}</span>
          </button>
        )}
        <button class="ctl leave" data-testid="leave" onClick={() => void leave()}>
          <Icon name="leave" />
          <span>Leave</span>
        </button>
      </footer>
    </div>
  );
}
