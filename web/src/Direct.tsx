// The 1:1 call layer of the web app: the incoming-call dialog and the call window, over every
// screen. The state is in direct.ts.
import { useEffect, useReducer, useRef } from 'preact/hooks';
import { statusText, type DirectCalls } from './direct.ts';
import { Icon } from './icons.tsx';

export function DirectCallLayer({ calls }: { calls: DirectCalls }) {
  const [, force] = useReducer((n: number) => n + 1, 0);
  useEffect(() => calls.subscribe(() => force(undefined as never)), [calls]);
  const remoteRef = useRef<HTMLVideoElement>(null);
  const localRef = useRef<HTMLVideoElement>(null);
  const remote = calls.remote;
  const local = calls.local;

  useEffect(() => {
    const el = remoteRef.current;
    if (el && remote) return remote.attach(el);
  }, [remote, remote?.tracks.video, calls.active]);
  useEffect(() => {
    const el = localRef.current;
    if (el) el.srcObject = local;
  }, [local, calls.active]);

  const call = calls.active;
  const ringing = calls.incoming;
  return (
    <>
      {ringing && (
        <div class="direct-dialog" role="dialog" data-testid="incoming-call" data-from={ringing.peer}>
          <div class="card">
            <strong>{ringing.name || ringing.peer}</strong>
            <span class="muted">is calling you ({ringing.video ? 'video' : 'voice'})</span>
            <div class="row">
              <button class="primary" data-testid="incoming-answer" onClick={() => void calls.answer()}>
                <Icon name={ringing.video ? 'cam' : 'mic'} size={16} /> Answer
              </button>
              <button class="danger" data-testid="incoming-decline" onClick={() => void calls.decline()}>
                Decline
              </button>
            </div>
          </div>
        </div>
      )}
      {call && (
        <div class="direct-call" data-testid="direct-call" data-status={call.status} data-peer={call.peer}>
          <div class="direct-head">
            <strong>{calls.peerName}</strong> <span class="muted" data-testid="direct-status">{statusText(call, calls.peerName)}</span>
          </div>
          <div class="direct-media">
            {call.video ? <video ref={remoteRef} autoPlay playsInline data-testid="direct-remote" /> : <audio ref={remoteRef as never} autoPlay />}
            {call.video && <video ref={localRef} autoPlay muted playsInline class="mirror direct-local" data-testid="direct-local" />}
          </div>
          <button class="danger" data-testid="direct-hangup" onClick={() => void calls.hangup()}>
            <Icon name="leave" size={16} /> {call.status === 'ringing' ? 'Cancel' : 'Hang up'}
          </button>
        </div>
      )}
      {!call && !ringing && calls.notice && (
        <div class="direct-notice notice" role="status" data-testid="direct-notice">
          {calls.notice}{' '}
          <button class="small ghost" onClick={() => ((calls.notice = null), force(undefined as never))}>
            <Icon name="close" size={12} />
          </button>
        </div>
      )}
    </>
  );
}
