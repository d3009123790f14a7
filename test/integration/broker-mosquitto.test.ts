// A second, independent client implementation: the Mosquitto command-line
// clients (Debian mosquitto-clients; .ci/run installs them).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[]): { done: Promise<Run>; started: Promise<void> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', (err) => reject(new Error(`${cmd}: ${err.message} (apt-get install mosquitto-clients)`)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const started = new Promise<void>((resolve) => child.once('spawn', () => resolve()));
  return { done, started };
}

describe('mosquitto_pub / mosquitto_sub', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer(); });
  afterAll(async () => { await srv.close(); });

  const base = (): string[] => ['-h', '127.0.0.1', '-p', String(srv.ports.mqtt), '-V', 'mqttv311'];

  /** Resolves once the broker holds a subscription to `topic` for this token. */
  async function subscribed(tokenId: number, topic: string): Promise<void> {
    await eventually(() => srv.broker.registry.forToken(tokenId).map((s) => srv.broker.registry.view(s))
      .some((v) => v.subscriptions.some((x) => x.topic === topic)), 5000, `subscription ${topic}`);
  }

  test('an ACL token subscribes to # and receives only its topics', async () => {
    const dash = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'devices/42/#', actions: ['subscribe'] }] } });
    const dev = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'devices/+/temp', actions: ['publish'] }] } });
    const sub = run('mosquitto_sub', [...base(), '-u', dash.key, '-t', '#', '-C', '1', '-W', '10', '-v']);
    await sub.started;
    await subscribed(dash.id, '#');
    const pub43 = await run('mosquitto_pub', [...base(), '-u', dev.key, '-t', 'devices/43/temp', '-m', 'no', '-q', '1']).done;
    expect(pub43.code).toBe(0);
    const pub42 = await run('mosquitto_pub', [...base(), '-u', dev.key, '-t', 'devices/42/temp', '-m', '21.5', '-q', '1']).done;
    expect(pub42.code).toBe(0);
    const got = await sub.done;
    expect(got.code).toBe(0);
    expect(got.stdout.trim()).toBe('devices/42/temp 21.5');
  });

  test('mosquitto_sub sees SUBACK 0x80 for a filter outside the ACL and a grant for the other', async () => {
    const t = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'devices/42/#', actions: ['subscribe'] }] } });
    const res = await run('mosquitto_sub', [...base(), '-u', t.key, '-t', 'test/x', '-t', 'devices/42/a', '-E', '-d']).done;
    expect(res.code).toBe(0);
    // Each filter on its own: 0x80 for the one outside the ACL, granted for the other (SPEC §4).
    expect(res.stdout).toMatch(/Subscribed \(mid: \d+\): 128, 0/);
  });

  test('an unknown key is refused with "bad user name or password"', async () => {
    const res = await run('mosquitto_pub', [...base(), '-u', 'Z'.repeat(64), '-t', 'a', '-m', 'x']).done;
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/bad user name or password/i);
  });

  test('the key in the password with no username is accepted (SPEC §4)', async () => {
    const t = await srv.token();
    const res = await run('mosquitto_pub', [...base(), '-u', '', '-P', t.key, '-t', 'a/b', '-m', 'x', '-d']).done;
    expect(res.stdout).toMatch(/received CONNACK \(0\)/);
    expect(res.code).toBe(0);
  });
});
