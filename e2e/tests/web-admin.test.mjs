// The web app's admin page (`/?admin`) in real Chromium against a real `chorus serve`: a wrong
// token is refused with a message, the right one shows the node, the users and groups, and a
// call in progress (joined by the SDK in another page) with its participant, gone once it ends.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launchBrowser, until, sdkPage, screenshot } from '../lib/harness.mjs';

const TOKEN = 'e2e-admin-token-0123456789abcdef';
let server;
let browser;

before(async () => {
  server = await Server.start({ CHORUS_ADMIN_TOKEN: TOKEN });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the admin page shows nodes, users, groups and live calls with the admin token only', async () => {
  const alice = await server.login('alice@example.org', 'Alice');
  const bob = await server.login('bob@example.org', 'Bob');
  const created = await server.api('POST', '/v1/groups', { name: 'Standup', room: true }, alice.token);
  const gid = created.group.gid;

  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => console.error('[admin] page error:', e.message));
  await page.goto(server.base + '/?admin');
  await page.fill('[data-testid=admin-token]', 'not-the-token-0123456789');
  await page.click('[data-testid=admin-login] button[type=submit]');
  await until(page, () => document.querySelector('[data-testid=admin-error]')?.textContent.includes('not the admin token'));
  assert.ok(await page.$('[data-testid=admin-login]'), 'still asking for the token');

  await page.fill('[data-testid=admin-token]', TOKEN);
  await page.click('[data-testid=admin-login] button[type=submit]');
  const version = await until(page, () => document.querySelector('td[data-col=version]')?.textContent);
  assert.match(version, /^\d+\.\d+\.\d+/);

  await page.click('[data-testid=admin-tab-users]');
  const addresses = await until(page, () => {
    const cells = [...document.querySelectorAll('td[data-col=address]')].map((td) => td.textContent);
    return cells.length === 2 && cells;
  });
  assert.deepEqual(addresses.sort(), [alice.user.address, bob.user.address].sort());
  assert.ok(!(await page.content()).includes('example.org'), 'the admin page shows addresses, never emails');

  await page.click('[data-testid=admin-tab-groups]');
  const names = await until(page, () => [...document.querySelectorAll('td[data-col=name]')].map((td) => td.textContent).join());
  assert.equal(names, 'Standup');

  // A call joined by the SDK in another page appears with its participant, and goes when it ends.
  await page.click('[data-testid=admin-tab-calls]');
  await until(page, () => document.querySelector('[data-testid=admin-calls]') && document.body.textContent.includes('None.'));
  const caller = await sdkPage(browser, server, 'caller');
  await caller.evaluate(
    async ({ server, token, gid }) => {
      const client = new Chorus.ChorusClient({ server, token });
      await client.connect();
      window.call = await client.joinCall(gid, {});
    },
    { server: server.base, token: alice.token, gid },
  );
  const row = await until(
    page,
    (g) => {
      const gids = [...document.querySelectorAll('td[data-col=gid]')].map((td) => td.textContent);
      const n = [...document.querySelectorAll('td[data-col=participants]')].map((td) => td.textContent);
      return gids[0] === String(g) && `${gids[0]}:${n[0]}`;
    },
    gid,
  );
  assert.equal(row, `${gid}:1`);
  await screenshot(page, 'web-admin-calls');
  await caller.evaluate(() => window.call.leave());
  await until(page, () => document.body.textContent.includes('None.'));
});
