import { useState } from 'preact/hooks';
import { ChorusAuth, ChorusError } from 'chorus-sdk';
import type { SessionUser } from 'chorus-sdk';
import { explain } from './lib.ts';

export function Login({ notice, onLogin }: { notice: string | null; onLogin: (token: string, user: SessionUser) => void }) {
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [code, setCode] = useState('');
  const [sent, setSent] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(notice);
  const auth = new ChorusAuth(location.origin);
  const invited = /[?&]room=/.test(location.search);

  async function sendCode(e: Event) {
    e.preventDefault();
    setError(null);
    if (!email.includes('@')) return setError('Enter your email address — the code is sent there.');
    setBusy(true);
    try {
      await auth.requestCode(email.trim());
      setSent(true);
    } catch (err) {
      setError(explain(err instanceof ChorusError ? err.code : undefined, `The code could not be sent: ${String(err)}`));
    } finally {
      setBusy(false);
    }
  }

  async function verify(e: Event) {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const s = await auth.verify(email.trim(), code.trim(), name.trim() || undefined);
      onLogin(s.token, s.user);
    } catch (err) {
      setError(explain(err instanceof ChorusError ? err.code : undefined, `Sign-in failed: ${String(err)}`));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="page center">
      <form class="card narrow" onSubmit={sent ? verify : sendCode} data-testid="login">
        <h1 class="brand big">Chorus</h1>
        <p class="muted">{invited ? 'Sign in to join the room you were invited to.' : 'Messaging and group calls. Sign in with your email.'}</p>
        {error && (
          <div class="error" role="alert" data-testid="error">
            {error}
          </div>
        )}
        <label>
          Your name
          <input data-testid="login-name" value={name} autoComplete="name" onInput={(e) => setName(e.currentTarget.value)} disabled={sent} />
        </label>
        <label>
          Email
          <input data-testid="login-email" type="email" required value={email} autoComplete="email" onInput={(e) => setEmail(e.currentTarget.value)} disabled={sent} />
        </label>
        {!sent ? (
          <button class="primary" data-testid="login-send" disabled={busy}>
            {busy ? 'Sending…' : 'Send code'}
          </button>
        ) : (
          <>
            <p class="muted">We sent a 6-digit code to {email}.</p>
            <label>
              Code
              <input
                data-testid="login-code"
                inputMode="numeric"
                autoComplete="one-time-code"
                maxLength={6}
                value={code}
                autoFocus
                onInput={(e) => setCode(e.currentTarget.value.replace(/\D/g, ''))}
              />
            </label>
            <button class="primary" data-testid="login-verify" disabled={busy || code.length !== 6}>
              {busy ? 'Checking…' : 'Sign in'}
            </button>
            <button type="button" class="ghost" onClick={() => { setSent(false); setCode(''); }}>
              Use another email / send a new code
            </button>
          </>
        )}
      </form>
    </div>
  );
}
