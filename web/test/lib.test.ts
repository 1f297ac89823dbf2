import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CALL,
  attachmentUrl,
  formatDuration,
  mediaKind,
  percent,
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

test('inline attachments open only from data: or http(s) URLs', () => {
  assert.equal(attachmentUrl({ file: { url: 'data:text/plain;base64,aGVsbG8=' } }), 'data:text/plain;base64,aGVsbG8=');
  assert.equal(attachmentUrl({ file: { url: 'data:,inline' }, data: { inline: 'data:image/png;base64,AAAA' } }), 'data:image/png;base64,AAAA');
  assert.equal(attachmentUrl({ file: { url: 'data:,inline' } }), null);
  assert.equal(attachmentUrl({ file: { url: 'javascript:alert(1)' } }), null);
});

test('durations, media kinds and percentages', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(65_400), '1:05');
  assert.equal(formatDuration(3_723_000), '1:02:03');
  assert.equal(mediaKind('video/webm'), 'video');
  assert.equal(mediaKind('audio/ogg'), 'audio');
  assert.equal(mediaKind('image/png'), 'image');
  assert.equal(mediaKind('application/pdf'), 'file');
  assert.equal(mediaKind(undefined), 'file');
  assert.equal(percent(0, 10), 0);
  assert.equal(percent(5, 10), 50);
  assert.equal(percent(11, 10), 100);
  assert.equal(percent(0, 0), 100);
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
