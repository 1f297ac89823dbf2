import { useEffect, useRef, useState } from 'preact/hooks';
import type { Group } from 'chorus-sdk';
import { ADMIN, CALL, MEMBER, QUALITIES, qualityLabel } from './lib.ts';
import type { Session } from './main.tsx';

export interface JoinChoice {
  audio: MediaStreamTrack | null;
  video: MediaStreamTrack | null;
  micOn: boolean;
  camOn: boolean;
  group: Group | null;
}

function mediaError(e: unknown, kind: 'camera' | 'microphone' | 'camera and microphone'): string {
  const name = (e as DOMException)?.name;
  if (name === 'NotAllowedError' || name === 'SecurityError')
    return kind === 'microphone'
      ? "Chorus can't use your microphone — allow it in the browser, or join muted"
      : "Chorus can't use your camera — allow it in the browser, or join without video";
  if (name === 'NotFoundError' || name === 'OverconstrainedError')
    return kind === 'microphone' ? 'No microphone found — join muted, or plug one in' : 'No camera found — join without video, or plug one in';
  if (name === 'NotReadableError') return `Your ${kind} is busy in another app — close it, or join without it`;
  return `Your ${kind} could not be started (${String(e)})`;
}

export function PreJoin({ session, gid, onJoin, onCancel }: { session: Session; gid: number; onJoin: (c: JoinChoice) => void; onCancel: () => void }) {
  const [group, setGroup] = useState<Group | null>(null);
  const [devices, setDevices] = useState<MediaDeviceInfo[]>([]);
  const [camId, setCamId] = useState('');
  const [micId, setMicId] = useState('');
  const [camOn, setCamOn] = useState(true);
  const [micOn, setMicOn] = useState(true);
  const [camError, setCamError] = useState<string | null>(null);
  const [micError, setMicError] = useState<string | null>(null);
  const [video, setVideo] = useState<MediaStreamTrack | null>(null);
  const [audio, setAudio] = useState<MediaStreamTrack | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [camBusy, setCamBusy] = useState(false);
  const [micBusy, setMicBusy] = useState(false);
  const handed = useRef(false);
  const vref = useRef<HTMLVideoElement>(null);

  useEffect(() => {
    session.client.group(gid).then(setGroup, () => setGroup(null)).finally(() => setLoaded(true));
  }, [gid]);

  const flags = group?.membership?.flags ?? MEMBER.PUBLISH;
  const isAdmin = !!((group?.membership?.flags ?? 0) & MEMBER.ADMIN) || !!((group?.membership?.admin_flags ?? 0) & ADMIN.OWNER);
  const viewOnly = group !== null && !(flags & MEMBER.PUBLISH) && !isAdmin;
  const roomVideo = !group || !!(group.call_flags & CALL.VIDEO);
  const roomAudio = !group || !!(group.call_flags & CALL.AUDIO);
  const height = QUALITIES.find((q) => q.value === group?.video_resolution)?.height ?? 720;

  // Camera preview (kept for the call when joining).
  useEffect(() => {
    if (viewOnly || !roomVideo || !camOn || group === null) return setCamBusy(false);
    let track: MediaStreamTrack | null = null;
    let cancelled = false;
    const h = Math.min(height, 1080);
    setCamBusy(true);
    navigator.mediaDevices
      .getUserMedia({ video: { ...(camId ? { deviceId: { exact: camId } } : {}), height: { ideal: h }, width: { ideal: Math.round((h * 16) / 9) } } })
      .then((ms) => {
        track = ms.getVideoTracks()[0] ?? null;
        if (cancelled) return track?.stop();
        setCamError(null);
        setVideo(track);
        void navigator.mediaDevices.enumerateDevices().then(setDevices);
      })
      .catch((e) => !cancelled && (setCamError(mediaError(e, 'camera')), setVideo(null)))
      .finally(() => !cancelled && setCamBusy(false));
    return () => {
      cancelled = true;
      if (track && !handed.current) track.stop();
      setVideo(null);
    };
  }, [camId, camOn, viewOnly, roomVideo, group, height]);

  useEffect(() => {
    if (viewOnly || !roomAudio || group === null) return setMicBusy(false);
    let track: MediaStreamTrack | null = null;
    let cancelled = false;
    setMicBusy(true);
    navigator.mediaDevices
      .getUserMedia({ audio: micId ? { deviceId: { exact: micId } } : true })
      .then((ms) => {
        track = ms.getAudioTracks()[0] ?? null;
        if (cancelled) return track?.stop();
        setMicError(null);
        setAudio(track);
        void navigator.mediaDevices.enumerateDevices().then(setDevices);
      })
      .catch((e) => !cancelled && (setMicError(mediaError(e, 'microphone')), setAudio(null)))
      .finally(() => !cancelled && setMicBusy(false));
    return () => {
      cancelled = true;
      if (track && !handed.current) track.stop();
      setAudio(null);
    };
  }, [micId, viewOnly, roomAudio, group]);

  useEffect(() => {
    if (vref.current) vref.current.srcObject = video ? new MediaStream([video]) : null;
  }, [video]);

  const cams = devices.filter((d) => d.kind === 'videoinput');
  const mics = devices.filter((d) => d.kind === 'audioinput');

  function join() {
    handed.current = true;
    if (audio) audio.enabled = micOn;
    onJoin({ audio, video: camOn ? video : null, micOn: micOn && !!audio, camOn: camOn && !!video, group });
  }

  return (
    <main class="prejoin" data-testid="prejoin" data-view-only={viewOnly ? 'true' : 'false'}>
      <section class="card">
        <h2>{group ? group.name : `Room #${gid}`}</h2>
        <p class="muted">
          #{gid}
          {group ? ` · ${qualityLabel(group.video_resolution)}` : ''}
          {!roomVideo ? ' · audio only' : ''}
        </p>
        {viewOnly ? (
          <p class="notice" data-testid="view-only-notice">
            You're joining to watch: you will see and hear everyone and can chat, but not be seen or heard.
          </p>
        ) : (
          <>
            <div class="preview">
              {roomVideo && camOn && video ? (
                <video ref={vref} autoPlay muted playsInline data-testid="preview-video" />
              ) : (
                <div class="preview-off">{camError ? '' : roomVideo ? 'Camera off' : 'This room is audio only'}</div>
              )}
            </div>
            {camError && roomVideo && camOn && (
              <div class="error" role="alert" data-testid="camera-error">
                {camError}
                <button class="small" onClick={() => setCamOn(false)} data-testid="join-without-video-toggle">
                  Turn video off
                </button>
              </div>
            )}
            {micError && roomAudio && (
              <div class="error" role="alert" data-testid="mic-error">
                {micError}
              </div>
            )}
            <div class="row wrap">
              {roomVideo && (
                <button class={camOn ? 'toggle on' : 'toggle'} data-testid="prejoin-cam" aria-pressed={camOn} onClick={() => setCamOn(!camOn)}>
                  {camOn ? 'Camera on' : 'Camera off'}
                </button>
              )}
              {roomAudio && (
                <button class={micOn ? 'toggle on' : 'toggle'} data-testid="prejoin-mic" aria-pressed={micOn} onClick={() => setMicOn(!micOn)}>
                  {micOn ? 'Mic on' : 'Mic off'}
                </button>
              )}
            </div>
            <div class="row wrap">
              {roomVideo && cams.length > 0 && (
                <label>
                  Camera
                  <select data-testid="camera-select" value={camId} onChange={(e) => setCamId(e.currentTarget.value)}>
                    <option value="">Default</option>
                    {cams.map((d, i) => (
                      <option key={d.deviceId} value={d.deviceId}>
                        {d.label || `Camera ${i + 1}`}
                      </option>
                    ))}
                  </select>
                </label>
              )}
              {roomAudio && mics.length > 0 && (
                <label>
                  Microphone
                  <select data-testid="mic-select" value={micId} onChange={(e) => setMicId(e.currentTarget.value)}>
                    <option value="">Default</option>
                    {mics.map((d, i) => (
                      <option key={d.deviceId} value={d.deviceId}>
                        {d.label || `Microphone ${i + 1}`}
                      </option>
                    ))}
                  </select>
                </label>
              )}
            </div>
          </>
        )}
        <div class="row">
          <button class="primary" data-testid="join-call" onClick={join} disabled={!loaded || (!viewOnly && (camBusy || micBusy))}>
            {!loaded ? 'Loading the room…' : viewOnly ? 'Join to watch' : camBusy || micBusy ? 'Starting camera and microphone…' : camError && camOn && roomVideo ? 'Join without video' : 'Join'}
          </button>
          <button class="ghost" data-testid="prejoin-cancel" onClick={onCancel}>
            Back to my rooms
          </button>
        </div>
      </section>
    </main>
  );
}
