// The `tokenmq` CLI (SPEC §9) as built (dist/src/cli/main.js, `npm run build`
// first), spawned against a real node: tables, --json, exit codes and the
// API's reason on error. Routes a node may not have yet (publish, check,
// logs) must either work as SPEC §5 says or fail with the API's 404 reason.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { closed, connect } from '../helpers/mqtt.js';
import { rest } from '../helpers/rest.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string | undefined>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH, ...env }, timeout: 20_000,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe.each(['memory', 'redis'] as const)('tokenmq CLI against a node with the %s store (SPEC §9)', (kind) => {
  let srv: TestServer;
  let master: string;
  const devices: MqttClient[] = [];
  let routes: Set<string>;
  const as = (key: string | undefined) => (args: string[]) => cli(args, { TOKENMQ_URL: srv.httpUrl, TOKENMQ_KEY: key });

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
    srv = await startTestServer({ store: kind });
    master = (await srv.token({ access: { type: 1 } })).key;
    const doc = (await rest(srv.httpUrl, 'GET', '/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    routes = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)));
  });
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.endAsync(true)));
    await srv?.close();
  });

  test('tokens create prints the key once in a table; list, update --disable, delete; --json is the API answer', async () => {
    const run = as(master);
    const created = await run(['tokens', 'create', '--info', 'cli truck', '--ttl', '3600']);
    expect(created.code).toBe(0);
    expect(created.stdout.split('\n')[0]).toMatch(/^ID\s+INFO\s+ACCESS\s+ENABLED\s+KEY$/);
    const [, id, key] = /^(\d+)\s+cli truck\s+standard\s+yes\s+([A-Za-z0-9]{64})$/m.exec(created.stdout) ?? [];
    expect(key).toBeDefined();
    expect(created.stderr).toContain('shown only now');

    const listed = await run(['tokens', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+cli truck\\s+standard\\s+yes`, 'm'));
    expect(listed.stdout).not.toContain(key!);

    const disabled = await run(['tokens', 'update', id!, '--disable']);
    expect(disabled.code).toBe(0);
    const asJson = await run(['--json', 'tokens', 'list', id!]);
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.stdout).result).toEqual([expect.objectContaining({ id: Number(id), enabled: false, info: 'cli truck' })]);

    const acl = await run(['--json', 'tokens', 'create', '--ttl', '60', '--access', 'acl', '--acl', '[{"uri":"mqtt","topic":"trucks/#","actions":["subscribe"]}]']);
    expect(acl.code).toBe(0);
    const aclToken = JSON.parse(acl.stdout).result[0];
    expect(aclToken.key).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(aclToken.access).toEqual({ type: 2, acl: [{ uri: 'mqtt', topic: 'trucks/#', actions: ['subscribe'] }] });

    const deleted = await run(['tokens', 'delete', `${id},${aclToken.id}`]);
    expect(deleted.code).toBe(0);
    expect((await rest(srv.httpUrl, 'GET', `/platform/tokens/${id}`, { key: master })).body.result).toEqual([]);
  });

  test('errors exit non-zero with the API reason: bad filter (400), ACL token (403), unknown key (401), no key, bad usage', async () => {
    const bad = await as(master)(['tokens', 'create', '--access', 'acl', '--acl', '[{"uri":"mqtt","topic":"a/#/b","actions":["subscribe"]}]']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^tokenmq: 400 .*access\.acl\[0\]\.topic/m);

    const acl = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'x', actions: ['subscribe'] }] } });
    const refused = await as(acl.key)(['tokens', 'list']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe('tokenmq: 403 token access does not allow GET /platform/tokens/all\n');

    const unknown = await as('A'.repeat(64))(['sessions', 'list']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('tokenmq: 401 unknown token\n');
    expect(unknown.stderr + unknown.stdout).not.toContain('A'.repeat(64)); // never the key

    const noKey = await as(undefined)(['tokens', 'list']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('TOKENMQ_KEY is not set');

    const usage = await as(master)(['tokens', 'update']);
    expect(usage.code).toBe(2);
    expect((await as(master)(['tokens', 'list', '--bogus'])).code).toBe(2);
    const unreachable = await cli(['tokens', 'list', '--url', 'http://127.0.0.1:1'], { TOKENMQ_KEY: master });
    expect(unreachable.code).toBe(3);
  });

  test('sessions list (with a client id mask) and sessions kick: the device sees its connection close', async () => {
    const device = await connect(srv.mqttUrl, master, { clientId: `cli-dev-${kind}` });
    devices.push(device);
    const other = await connect(srv.mqttUrl, master, { clientId: `cli-other-${kind}` });
    devices.push(other);
    const run = as(master);
    const listed = await run(['sessions', 'list', '--client-id', 'cli-dev-*']);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')[0]).toMatch(/^CLIENT ID\s+TOKEN\s+IP\s+TRANSPORT\s+NODE\s+CONNECTED\s+IN\s+OUT$/);
    expect(listed.stdout).toContain(`cli-dev-${kind}`);
    expect(listed.stdout).not.toContain(`cli-other-${kind}`);
    const asJson = JSON.parse((await run(['sessions', 'list', '--json', `cli-dev-${kind}`])).stdout);
    expect(asJson.result).toEqual([expect.objectContaining({ client_id: `cli-dev-${kind}`, transport: 'tcp' })]);

    const gone = closed(device, 5000);
    const kicked = await run(['sessions', 'kick', `cli-dev-${kind}`]);
    expect(kicked.code).toBe(0);
    expect(kicked.stdout).toContain(`cli-dev-${kind}`);
    await gone;
    expect(other.connected).toBe(true);
  });

  test('publish, check and tokens logs: SPEC §5 answers where the node has the route, else its 404 reason and exit 1', async () => {
    const run = as(master);
    const publish = await run(['publish', 'cli/t', 'hello']);
    if (routes.has('POST /mqtt/messages')) {
      expect(publish.code).toBe(0);
    } else {
      expect([publish.code, publish.stderr]).toEqual([1, 'tokenmq: 404 no route POST /mqtt/messages\n']);
    }
    const check = await run(['check', 'cli/t', '--action', 'publish']);
    if (routes.has('GET /auth/check')) {
      expect(check.code).toBe(0);
      expect(check.stdout).toMatch(/^ALLOWED\s+ENTRY\s+REASON\nyes/);
    } else {
      expect([check.code, check.stderr]).toEqual([1, 'tokenmq: 404 no route GET /auth/check\n']);
    }
    const logs = await run(['tokens', 'logs', 'all']);
    if (routes.has('GET /platform/tokens/{sel}/logs')) {
      expect(logs.code).toBe(0);
    } else {
      expect([logs.code, logs.stderr]).toEqual([1, 'tokenmq: 404 no route GET /platform/tokens/all/logs\n']);
    }
  });
});
