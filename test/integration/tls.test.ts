// MQTTS and WSS listeners (SPEC §1): on only when TLS_CERT and TLS_KEY are given;
// sessions report their transport.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../helpers/mqtt.js';
import { startProcess, type ServerProcess } from '../helpers/process.js';

describe('TLS listeners', () => {
  let dir: string;
  let srv: ServerProcess;
  let ports: { mqtts: number; wss: number };
  const master = 'TlsMasterKey0123456789abcdef';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tokenmq-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    srv = await startProcess({
      TLS_CERT: join(dir, 'cert.pem'), TLS_KEY: join(dir, 'key.pem'), MQTTS_PORT: '0', WSS_PORT: '0', MASTER_TOKEN: master,
    });
    const line = srv.stdout().split('\n').find((l) => l.includes('"msg":"listening"'))!;
    ports = JSON.parse(line) as { mqtts: number; wss: number };
  });
  afterAll(async () => {
    await srv.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('the listening line reports the TLS ports', () => {
    expect(ports.mqtts).toBeGreaterThan(0);
    expect(ports.wss).toBeGreaterThan(0);
  });

  test('MQTT over TLS and over secure WebSocket authenticate with a token; listings say tls and wss', async () => {
    const tls = await connect(`mqtts://127.0.0.1:${ports.mqtts}`, master, { rejectUnauthorized: false, clientId: 'over-tls' });
    const wss = await connect(`wss://127.0.0.1:${ports.wss}/mqtt`, master, { rejectUnauthorized: false, clientId: 'over-wss', wsOptions: { rejectUnauthorized: false } });
    const res = await fetch(`http://127.0.0.1:${srv.ports.http}/mqtt/sessions/all?client_id=over-*&fields=client_id,transport`, {
      headers: { authorization: `FlespiToken ${master}` },
    });
    const { result } = (await res.json()) as { result: { client_id: string; transport: string }[] };
    expect(result.sort((a, b) => a.client_id.localeCompare(b.client_id))).toEqual([
      { client_id: 'over-tls', transport: 'tls' },
      { client_id: 'over-wss', transport: 'wss' },
    ]);
    await Promise.all([tls.endAsync(), wss.endAsync()]);
  });
});
