// The operator's page, at `/?admin`: what the server is doing — its nodes, calls in progress,
// users, groups and webhook deliveries — read from the `/admin` API (docs/openapi.json) with the
// admin token. The token is asked for once and kept in this tab only (sessionStorage); the page
// needs no user login. Calls and nodes refresh every two seconds while shown.

import { useEffect, useState } from 'preact/hooks';

const TOKEN_KEY = 'chorus.admin-token';

type Row = Record<string, unknown>;
type Tab = 'nodes' | 'calls' | 'users' | 'groups' | 'webhooks';

/** Where each view's rows are in the answer, and the columns shown. */
const VIEWS: Record<Tab, { list?: string; columns: string[]; live?: boolean }> = {
  nodes: { columns: ['node', 'version', 'store', 'started_at', 'sessions', 'calls', 'participants'], live: true },
  calls: { columns: ['gid', 'participants', 'started_at', 'node'], live: true },
  users: { list: 'users', columns: ['uid', 'address', 'name', 'active', 'created_at'] },
  groups: { list: 'groups', columns: ['gid', 'name', 'owner', 'members', 'created_at'] },
  webhooks: { columns: ['id', 'type', 'url', 'status', 'attempts', 'last_error'] },
};

class Unauthorized extends Error {}

async function adminGet(token: string, path: string): Promise<unknown> {
  const r = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (r.status === 401) throw new Unauthorized('That is not the admin token.');
  const body = (await r.json().catch(() => null)) as { error?: { message?: string } } | null;
  if (!r.ok) throw new Error(body?.error?.message ?? `HTTP ${r.status}`);
  return body;
}

/** A cell as text: times (`*_at`, ms) as local dates, nothing as a dash. */
export function cell(column: string, v: unknown): string {
  if (v === null || v === undefined || v === '') return '–';
  if (column.endsWith('_at') && typeof v === 'number') return new Date(v).toLocaleString();
  return String(v);
}

export function AdminPage() {
  const [token, setToken] = useState<string | null>(() => sessionStorage.getItem(TOKEN_KEY));
  const [draft, setDraft] = useState('');
  const [tab, setTab] = useState<Tab>('nodes');
  const [rows, setRows] = useState<Row[] | null>(null);
  const [pages, setPages] = useState<number[]>([0]);
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const view = VIEWS[tab];
  const after = pages[pages.length - 1];

  useEffect(() => {
    if (!token) return;
    let stopped = false;
    async function load() {
      try {
        const q = view.list ? `?after=${after}&limit=50` : '';
        const body = (await adminGet(token as string, `/admin/${tab}${q}`)) as Row | Row[];
        if (stopped) return;
        const list = view.list ? ((body as Row)[view.list] as Row[]) : (body as Row[]);
        setRows(list);
        setNext(view.list ? (((body as Row).next as number | undefined) ?? null) : null);
        setError(null);
      } catch (e) {
        if (stopped) return;
        if (e instanceof Unauthorized) {
          sessionStorage.removeItem(TOKEN_KEY);
          setToken(null);
        }
        setError(e instanceof Error ? e.message : String(e));
      }
    }
    void load();
    const timer = view.live ? setInterval(() => void load(), 2000) : undefined;
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [token, tab, after]);

  function show(t: Tab) {
    setTab(t);
    setRows(null);
    setPages([0]);
  }

  if (!token) {
    return (
      <div class="page center">
        <form
          class="card narrow"
          data-testid="admin-login"
          onSubmit={(e) => {
            e.preventDefault();
            const t = draft.trim();
            if (!t) return;
            sessionStorage.setItem(TOKEN_KEY, t);
            setError(null);
            setToken(t);
          }}
        >
          <h2>Chorus admin</h2>
          <p class="muted">The admin token is in the server's data directory (admin-token) or its configuration.</p>
          {error && (
            <div class="error" role="alert" data-testid="admin-error">
              {error}
            </div>
          )}
          <input
            type="password"
            placeholder="Admin token"
            data-testid="admin-token"
            value={draft}
            onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
          />
          <button class="primary" type="submit">
            Open
          </button>
        </form>
      </div>
    );
  }

  return (
    <div class="page">
      <header class="topbar">
        <span class="brand">Chorus admin</span>
        {(Object.keys(VIEWS) as Tab[]).map((t) => (
          <button class={`small ${t === tab ? 'on' : 'ghost'}`} data-testid={`admin-tab-${t}`} onClick={() => show(t)}>
            {t[0].toUpperCase() + t.slice(1)}
          </button>
        ))}
        <span class="grow" />
        <button
          class="small ghost"
          data-testid="admin-close"
          onClick={() => {
            sessionStorage.removeItem(TOKEN_KEY);
            setToken(null);
          }}
        >
          Forget token
        </button>
      </header>
      {error && (
        <div class="error" role="alert" data-testid="admin-error">
          {error}
        </div>
      )}
      <div class="admin">
        <table data-testid={`admin-${tab}`}>
          <thead>
            <tr>
              {view.columns.map((c) => (
                <th>{c.replace(/_/g, ' ')}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {(rows ?? []).map((r) => (
              <tr>
                {view.columns.map((c) => (
                  <td data-col={c}>{cell(c, r[c])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
        {rows && rows.length === 0 && <p class="muted">None.</p>}
        {view.list && (
          <div class="pager">
            <button class="small" disabled={pages.length < 2} onClick={() => setPages(pages.slice(0, -1))}>
              Previous
            </button>
            <button class="small" disabled={next === null} onClick={() => next !== null && setPages([...pages, next])}>
              Next
            </button>
          </div>
        )}
      </div>
    </div>
  );
}
