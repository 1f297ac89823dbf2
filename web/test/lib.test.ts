import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CALL,
  MAX_ATTACHMENT_BYTES,
  attachmentMessage,
  attachmentUrl,
  callFlags,
  convOf,
  deliveryOf,
  explain,
  gridShape,
  initials,
  inviteLink,
  paginate,
  parseInvite,
  qualityLabel,
  qualityOf,
  ticks,
} from '../src/lib.ts';

test('call flags from room options', () => {
  assert.equal(callFlags({ audio: true, video: true, screen: true, simulcast: false, talkDetection: true }), 0x1 | 0x2 | 0x4 | 0x100 | 0x8000);
  assert.equal(callFlags({ audio: true, video: false, screen: false, simulcast: false, talkDetection: false }), CALL.VALID | CALL.AUDIO);
  assert.equal(callFlags({ audio: false, video: true, screen: false, simulcast: true, talkDetection: false }), 0x1 | 0x4 | 0x200);
});

test('quality labels follow crates/proto resolution values', () => {
  assert.equal(qualityLabel(9), '180p');
  assert.equal(qualityLabel(10), '360p');
  assert.equal(qualityLabel(3), '720p');
  assert.equal(qualityLabel(4), '1080p');
  assert.equal(qualityLabel(5), '4K');
  assert.equal(qualityLabel(0), '720p');
});

test('invite links round-trip', () => {
  const link = inviteLink('https://chorus.example.org/', 1001, '12 34');
  assert.equal(link, 'https://chorus.example.org/?room=1001&pin=12%2034');
  assert.deepEqual(parseInvite(link), { gid: 1001, pin: '12 34' });
  assert.deepEqual(parseInvite('?room=7'), { gid: 7, pin: null });
  assert.equal(parseInvite('?room=abc&pin=1'), null);
  assert.equal(parseInvite(''), null);
});

test('grid shape fills the box with 16:9 tiles', () => {
  assert.deepEqual(gridShape(1, 1600, 900), { cols: 1, rows: 1 });
  assert.deepEqual(gridShape(2, 1600, 900), { cols: 2, rows: 1 });
  assert.deepEqual(gridShape(4, 1600, 900), { cols: 2, rows: 2 });
  assert.deepEqual(gridShape(16, 1600, 900), { cols: 4, rows: 4 });
  // A phone in portrait stacks tiles.
  assert.deepEqual(gridShape(2, 390, 700), { cols: 1, rows: 2 });
  assert.equal(gridShape(3, 390, 700).cols, 1);
  assert.deepEqual(gridShape(0, 100, 100), { cols: 1, rows: 1 });
});

test('paging 16 tiles at a time', () => {
  const items = Array.from({ length: 35 }, (_, i) => i);
  assert.deepEqual(paginate(items, 0), { items: items.slice(0, 16), page: 0, pages: 3 });
  assert.deepEqual(paginate(items, 2).items, [32, 33, 34]);
  assert.equal(paginate(items, 9).page, 2, 'clamped');
  assert.equal(paginate([], 0).pages, 1);
});

test('delivery state from receipts', () => {
  assert.equal(deliveryOf(undefined, { delivered: 0, read: 0 }), 'pending');
  assert.equal(deliveryOf(5, { delivered: 4, read: 0 }), 'sent');
  assert.equal(deliveryOf(5, { delivered: 5, read: 4 }), 'delivered');
  assert.equal(deliveryOf(5, { delivered: 5, read: 9 }), 'read');
  assert.equal(ticks('sent'), '✓');
  assert.equal(ticks('delivered'), '✓');
  assert.equal(ticks('read'), '✓✓');
});

test('conversation of a message', () => {
  assert.equal(convOf({ gid: 3, from: 'a' }, 'me'), 'g:3');
  assert.equal(convOf({ peer: 'bob', from: 'me' }, 'me'), 'p:bob');
  assert.equal(convOf({ peer: 'me', from: 'bob' }, 'me'), 'p:bob');
});

test('attachments: small in file.url, larger in data.inline, too large refused', () => {
  const small = attachmentMessage({ name: 'a.txt', type: 'text/plain', size: 5 }, 'data:text/plain;base64,aGVsbG8=');
  assert.ok('file' in small);
  assert.equal(small.file.url, 'data:text/plain;base64,aGVsbG8=');
  assert.equal(small.file.filetype, 10);
  assert.equal(attachmentUrl(small), 'data:text/plain;base64,aGVsbG8=');
  const big = 'data:image/png;base64,' + 'A'.repeat(5000);
  const mid = attachmentMessage({ name: 'p.png', type: 'image/png', size: 3800 }, big);
  assert.ok('file' in mid && mid.data);
  assert.ok(mid.file.url.length < 2048);
  assert.equal(mid.file.filetype, 1);
  assert.equal(attachmentUrl(mid), big);
  const tooBig = attachmentMessage({ name: 'x.bin', type: '', size: MAX_ATTACHMENT_BYTES + 1 }, '');
  assert.ok('error' in tooBig && /limit/.test(tooBig.error));
  assert.equal(attachmentUrl({ file: { url: 'javascript:alert(1)' } }), null);
});

test('connection quality and plain-words errors', () => {
  assert.equal(qualityOf(null, null), 'unknown');
  assert.equal(qualityOf(0.02, 0), 'good');
  assert.equal(qualityOf(0.2, 0), 'fair');
  assert.equal(qualityOf(0.02, 0.1), 'poor');
  assert.equal(explain('pin_invalid', ''), "That pin doesn't open this room — check the link or ask the host.");
  assert.equal(explain('whatever', 'fallback'), 'fallback');
  assert.equal(initials('Ann Lee'), 'AL');
  assert.equal(initials(''), '?');
});
