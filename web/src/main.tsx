import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ChorusAuth, ChorusClient, ChorusError } from 'chorus-sdk';
import type { SessionUser } from 'chorus-sdk';
import { explain, parseInvite } from './lib.ts';
import { ChatStore } from './chat.ts';
import { Login } from './Login.tsx';
import { Rooms } from './Rooms.tsx';
import { PreJoin, type JoinChoice } from './PreJoin.tsx';
import { CallView } from './Call.tsx';
import { AdminPage } from './Admin.tsx';
import { DirectCalls } from './direct.ts';
import { DirectCallLayer } from './Direct.tsx';
import './styles.css';

const TOKEN_KEY = 'chorus.token';
const USER_KEY = 'chorus.user';

export interface Session {
  token: string;
  user: SessionUser;
  client: ChorusClient;
  chat: ChatStore;
  /** 1:1 calls. */
  direct: DirectCalls;
}

function openSession(token: string, user: SessionUser): Session {
  const client = new ChorusClient({ server: location.origin, token });
  const chat = new ChatStore(client);
  const direct = new DirectCalls(client);
  client.connect().catch(() => undefined);
  return { token, user, client, chat, direct };
}

function savedSession(): Session | null {
  const token = localStorage.getItem(TOKEN_KEY);
  const user = localStorage.getItem(USER_KEY);
  if (!token || !user) return null;
  try {
    return openSession(token, JSON.parse(user) as SessionUser);
  } catch {
    return null;
  }
}

type Screen = { name: 'rooms' } | { name: 'prejoin'; gid: number } | { name: 'call'; gid: number; choice: JoinChoice };

function setUrl(gid: number | null) {
  const url = gid === null ? '/' : `/?room=${gid}`;
  if (location.pathname + location.search !== url) history.replaceState(null, '', url);
}

function App() {
  const [session, setSession] = useState<Session | null>(savedSession);
  const [screen, setScreen] = useState<Screen>({ name: 'rooms' });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // A stored token that the server no longer takes: back to the login.
  useEffect(() => {
    if (!session) return;
    const off = session.client.on('connection', (e) => {
      if (e.state === 'auth_failed') logout(true);
    });
    return off;
  }, [session]);

  // Invite links: `/?room=GID&pin=PIN`, handled once logged in.
  useEffect(() => {
    if (!session) return;
    const inv = parseInvite(location.search);
    if (!inv) return;
    void openRoom(inv.gid, inv.pin);
  }, [session]);

  async function openRoom(gid: number, pin: string | null) {
    if (!session) return;
    setError(null);
    setBusy(true);
    try {
      if (pin) await session.client.rest.joinGroup(gid, pin);
      else await session.client.group(gid);
      setUrl(gid);
      setScreen({ name: 'prejoin', gid });
    } catch (e) {
      const code = e instanceof ChorusError ? e.code : undefined;
      setUrl(null);
      setError(
        !pin && (code === 'not_found' || code === 'forbidden')
          ? "You aren't in this room yet — open the invite link with its pin, or enter the pin below."
          : explain(code, `Could not open the room: ${e instanceof Error ? e.message : String(e)}`),
      );
      setScreen({ name: 'rooms' });
    } finally {
      setBusy(false);
    }
  }

  function logout(expired = false) {
    const s = session;
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
    setSession(null);
    setScreen({ name: 'rooms' });
    if (expired) setError('Your session has ended — sign in again.');
    if (s) {
      s.client.groupCall?.leave().catch(() => undefined);
      s.chat.dispose();
      s.direct.dispose();
      s.client.close();
      if (!expired) new ChorusAuth(location.origin).logout(s.token).catch(() => undefined);
    }
  }

  if (!session) {
    return (
      <Login
        notice={error}
        onLogin={(token, user) => {
          localStorage.setItem(TOKEN_KEY, token);
          localStorage.setItem(USER_KEY, JSON.stringify(user));
          setError(null);
          setSession(openSession(token, user));
        }}
      />
    );
  }

  if (screen.name === 'call') {
    return (
      <>
        <DirectCallLayer calls={session.direct} />
        <CallView
          session={session}
          gid={screen.gid}
          choice={screen.choice}
          onExit={() => {
            setUrl(null);
            setScreen({ name: 'rooms' });
          }}
        />
      </>
    );
  }

  return (
    <div class="page">
      <DirectCallLayer calls={session.direct} />
      <header class="topbar">
        <span class="brand">Chorus</span>
        <span class="grow" />
        <span class="who" data-testid="me">
          {session.user.name || session.user.address}
        </span>
        <button class="ghost" data-testid="logout" onClick={() => logout()}>
          Log out
        </button>
      </header>
      {error && (
        <div class="error" role="alert" data-testid="error">
          {error}
        </div>
      )}
      {screen.name === 'prejoin' ? (
        <PreJoin
          session={session}
          gid={screen.gid}
          onCancel={() => {
            setUrl(null);
            setScreen({ name: 'rooms' });
          }}
          onJoin={(choice) => setScreen({ name: 'call', gid: screen.gid, choice })}
        />
      ) : (
        <Rooms session={session} busy={busy} onOpen={(gid, pin) => void openRoom(gid, pin)} />
      )}
    </div>
  );
}

// `/?admin` is the operator's page (admin token, no user login).
const admin = new URLSearchParams(location.search).has('admin');
render(admin ? <AdminPage /> : <App />, document.getElementById('app') as HTMLElement);
