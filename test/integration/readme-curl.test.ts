// The README's broker route examples (code blocks marked `sh curl-example`) run
// as written with curl against a real node: documentation that cannot rot.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import { connect } from '../helpers/mqtt.js';
import { eventually, rest } from '../helpers/rest.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** Each command of the marked blocks: comments dropped, `\` continuations joined. */
function curlExamples(markdown: string): string[] {
  const commands: string[] = [];
  for (const block of markdown.matchAll(/^```sh curl-example\n([\s\S]*?)^```$/gm)) {
    const text = (block[1] as string).replace(/\\\n\s*/g, ' ');
    for (const line of text.split('\n')) if (line.trim().startsWith('curl ')) commands.push(line.trim());
  }
  return commands;
}

const examples = curlExamples(readFileSync(new URL('../../README.md', import.meta.url), 'utf8'));

describe('README curl examples (SPEC §5 routes)', () => {
  let srv: TestServer;
  let key: string;
  let device: MqttClient;
  beforeAll(async () => {
    srv = await startTestServer();
    key = (await srv.token({ access: { type: 1 } })).key;
    // what the examples name: a session truck-42 subscribed to devices/42/#, a token with info truck...
    device = await connect(srv.mqttUrl, key, { clientId: 'truck-42' });
    await device.subscribeAsync('devices/42/#');
    await rest(srv.httpUrl, 'POST', '/platform/tokens', { key, body: { ttl: 60, info: 'truck 7', metadata: { customer: 'acme' } } });
  });
  afterAll(async () => {
    await device.endAsync(true);
    await srv.close();
  });

  test('the README has examples for every new route', () => {
    const all = examples.join('\n');
    for (const route of ['/mqtt/messages"', '/mqtt/messages/', '/subscriptions"', '/subscriptions/', 'client_id=', '-X PATCH', 'info=']) {
      expect(all).toContain(route);
    }
  });

  test.each(examples.map((c, i) => [i, c] as [number, string]))('example %i answers 2xx with a result: %s', async (_i, command) => {
    const { stdout } = await promisify(execFile)('bash', ['-c', command], {
      env: { ...process.env, TOKENMQ: srv.httpUrl, TOKENMQ_KEY: key },
    });
    const body = JSON.parse(stdout) as { result?: unknown[] };
    expect(Array.isArray(body.result)).toBe(true);
  });

  test('what the examples did happened: the subscription is gone, the token patched', async () => {
    await eventually(async () => ((await rest(srv.httpUrl, 'GET', '/mqtt/sessions/truck-42/subscriptions', { key })).body.result.length === 0 ? true : null));
    const patched = await rest(srv.httpUrl, 'GET', '/platform/tokens/info=truck*', { key });
    expect(patched.body.result[0].metadata).toEqual({ customer: 'acme' });
  });
});
