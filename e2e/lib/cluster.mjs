// Clusters for the browser tests: `chorus serve` nodes (ids node0, node1, …) on a fresh
// PostgreSQL database, joined by NATS under a subject prefix of their own.
//
// Needs PostgreSQL at 127.0.0.1:5432 (trust; CHORUS_TEST_PG overrides the URL without its
// database) with `psql`, and NATS at 127.0.0.1:4222 (CHORUS_TEST_NATS).

import { execFileSync } from 'node:child_process';
import { Server } from './harness.mjs';

const PG = process.env.CHORUS_TEST_PG || 'postgres://postgres@127.0.0.1:5432';
const NATS = process.env.CHORUS_TEST_NATS || 'nats://127.0.0.1:4222';
export const ADMIN = 'e2e-cluster-admin-token-0123456789';

function psql(sql) {
  execFileSync('psql', [`${PG}/test`, '-v', 'ON_ERROR_STOP=1', '-q', '-c', sql], { stdio: ['ignore', 'ignore', 'inherit'] });
}

export class Cluster {
  /** Starts `n` nodes one after the other (the first creates the schema) and waits until
   * every node lists all of them. */
  static async start(n) {
    const tag = `e2e_${process.pid}_${Date.now() % 1_000_000}`;
    const c = new Cluster(`chorus_${tag}`);
    psql(`CREATE DATABASE ${c.database}`);
    const env = (i) => ({
      CHORUS_DATABASE: `${PG}/${c.database}`,
      CHORUS_NATS: NATS,
      CHORUS_NATS_PREFIX: tag,
      CHORUS_NODE_ID: `node${i}`,
      CHORUS_ADMIN_TOKEN: ADMIN,
      CHORUS_PIN_KEY: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff',
    });
    for (let i = 0; i < n; i++) c.nodes.push(await Server.start(env(i)));
    for (let i = 0; i < n; i++) await c.waitNodes(i, `${n} nodes`, (l) => l.length === n);
    return c;
  }

  constructor(database) {
    this.database = database;
    this.nodes = [];
  }

  /** `GET /admin/nodes` of node `i`. */
  async adminNodes(i) {
    const r = await fetch(this.nodes[i].base + '/admin/nodes', { headers: { authorization: `Bearer ${ADMIN}` } });
    return r.json();
  }

  /** Waits until node `i` lists nodes that `ok` accepts; returns the list. */
  async waitNodes(i, what, ok, timeout = 10_000) {
    const end = Date.now() + timeout;
    for (;;) {
      const list = await this.adminNodes(i);
      if (ok(list)) return list;
      if (Date.now() > end) throw new Error(`node${i} never showed ${what}: ${JSON.stringify(list)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops the nodes still running and drops the database. */
  async stop() {
    for (const n of this.nodes) if (n.child.exitCode === null && n.child.signalCode === null) await n.stop();
    try {
      psql(`DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
    } catch (e) {
      console.error('dropping the test database:', e.message);
    }
  }
}

/** The id of the one node holding a call of `n` participants, the others holding none. */
export function host(list, n) {
  const hosts = list.filter((x) => x.calls === 1);
  return hosts.length === 1 && hosts[0].participants === n && list.every((x) => x.calls <= 1) ? hosts[0].id : null;
}
