import { useEffect, useRef, useState } from 'preact/hooks';
import type { ChatStore, ChatMessage } from './chat.ts';
import { Icon } from './icons.tsx';
import { fileIdOf, type ChorusClient } from 'chorus-sdk';
import { StoredFile, UploadBar } from './Files.tsx';
import { attachmentUrl, formatBytes, ticks, type ConvKey } from './lib.ts';

function Attachment({ m, client }: { m: ChatMessage; client: ChorusClient }) {
  const f = m.file;
  if (!f) return null;
  const name = f.name ?? 'file';
  const mime = f.mime ?? 'application/octet-stream';
  if (m.upload) {
    return (
      <span class="file">
        {m.preview && <img src={m.preview} alt={name} />}
        <UploadBar upload={m.upload} label={name} />
      </span>
    );
  }
  const id = fileIdOf(f);
  if (id) return <StoredFile client={client} id={id} name={name} mime={mime} size={f.size} preview={m.preview} />;
  // Inline bytes (data: URLs, as Mesibo apps may send) or a link elsewhere.
  const url = attachmentUrl(m);
  const label = `${name}${f.size ? ` (${formatBytes(f.size)})` : ''}`;
  if (!url) return <span class="file">{label}</span>;
  return (
    <span class="file" data-testid="chat-file">
      {mime.startsWith('image/') && <img src={url} alt={name} />}
      <a href={url} download={name}>
        <Icon name="clip" size={14} /> {label}
      </a>
    </span>
  );
}

export function ChatPanel({
  store,
  conv,
  setConv,
  gid,
  self,
  nameOf,
  onCall,
}: {
  store: ChatStore;
  conv: ConvKey;
  setConv: (k: ConvKey) => void;
  gid: number;
  self: string;
  nameOf: (address: string) => string;
  /** Places a 1:1 call to `peer` (shown in 1:1 chats). It takes this tab out of the room's call. */
  onCall?: (peer: string, video: boolean) => void;
}) {
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const list = useRef<HTMLDivElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const messages = store.messages(conv);
  const typing = store.typing(conv);

  useEffect(() => {
    store.show(conv);
    return () => store.show(null);
  }, [conv]);
  useEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [messages.length, conv]);

  // Conversations: the room, then 1:1 chats that have messages or are open.
  const convs: ConvKey[] = [`g:${gid}`];
  for (const k of store.conversations.keys()) if (k.startsWith('p:') && !convs.includes(k)) convs.push(k);
  if (!convs.includes(conv)) convs.push(conv);

  async function send(e: Event) {
    e.preventDefault();
    const t = text.trim();
    if (!t) return;
    setText('');
    setError(null);
    await store.send(conv, { text: t });
  }

  function attach(files: FileList | null | undefined) {
    setError(null);
    for (const f of files ?? []) void store.sendFile(conv, f);
  }

  return (
    <div
      class="chat"
      data-testid="chat"
      data-conv={conv}
      onDragOver={(e) => e.preventDefault()}
      onDrop={(e) => {
        e.preventDefault();
        attach(e.dataTransfer?.files);
      }}
    >
      <div class="convs">
        {convs.map((k) => (
          <button key={k} class={`small${k === conv ? ' on' : ''}`} data-testid="chat-conv" data-conv={k} onClick={() => setConv(k)}>
            {k.startsWith('g:') ? 'Everyone' : nameOf(k.slice(2))}
            {store.unread.get(k) ? <span class="unread"> {store.unread.get(k)}</span> : null}
          </button>
        ))}
      </div>
      {conv.startsWith('p:') && onCall && (
        <div class="chat-call">
          <span class="muted">1:1 with {nameOf(conv.slice(2))}</span>
          <button class="small" title="Video call (leaves the room's call)" data-testid="chat-call-video" onClick={() => onCall(conv.slice(2), true)}>
            <Icon name="cam" size={14} /> Call
          </button>
          <button class="small" title="Voice call (leaves the room's call)" data-testid="chat-call-voice" onClick={() => onCall(conv.slice(2), false)}>
            <Icon name="mic" size={14} />
          </button>
        </div>
      )}
      <div class="messages" ref={list} data-testid="chat-messages">
        {messages.length === 0 && <p class="muted">No messages yet{conv.startsWith('p:') ? ` — only ${nameOf(conv.slice(2))} sees what you write here` : ''}.</p>}
        {messages.map((m) => {
          const mine = m.from === self;
          const d = mine ? store.delivery(conv, m) : null;
          return (
            <div key={m.id || m.mid} class={`msg${mine ? ' mine' : ''}`} data-testid="chat-message" data-from={m.from} data-seq={m.seq}>
              {!mine && <div class="from">{nameOf(m.from)}</div>}
              {m.text && <div class="text">{m.deleted ? <i>deleted</i> : m.text}</div>}
              <Attachment m={m} client={store.client} />
              <div class="meta">
                {new Date(m.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}
                {d && (
                  <span class={`receipt r-${d}`} data-testid="receipt" data-status={d} title={d === 'failed' ? `Not sent (${m.error ?? ''})` : d}>
                    {' '}
                    {ticks(d)}
                  </span>
                )}
              </div>
            </div>
          );
        })}
      </div>
      <div class="typing" data-testid="typing">
        {typing.length > 0 ? `${typing.map(nameOf).join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…` : ''}
      </div>
      {error && (
        <div class="error" role="alert" data-testid="chat-error">
          {error}
        </div>
      )}
      <form class="composer" onSubmit={send}>
        <button type="button" class="small" title="Attach files (or drop them here)" data-testid="chat-attach" onClick={() => fileInput.current?.click()}>
          <Icon name="clip" size={16} />
        </button>
        <input
          ref={fileInput}
          type="file"
          multiple
          hidden
          data-testid="chat-file-input"
          onChange={(e) => {
            const input = e.currentTarget;
            attach(input.files);
            input.value = '';
          }}
        />
        <input
          data-testid="chat-input"
          value={text}
          placeholder={conv.startsWith('g:') ? 'Message everyone' : `Message ${nameOf(conv.slice(2))}`}
          onInput={(e) => {
            setText(e.currentTarget.value);
            if (e.currentTarget.value) store.typed(conv);
          }}
        />
        <button class="primary small" data-testid="chat-send">
          Send
        </button>
      </form>
    </div>
  );
}
