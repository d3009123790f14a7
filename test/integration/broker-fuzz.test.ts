// MQTT byte-stream fuzzing of a live node (issue 8; SPEC §4 "bad input never
// crashes the process nor corrupts stored data"). 2,000 generated streams with a
// fixed seed over TCP and WebSocket: valid, mutated, truncated, oversized,
// garbage, split and packed; valid keys (standard, master, ACL) and refused ones.
// The properties are checked by test/helpers/fuzz-harness.ts; a failure names
// the stream (seed, index, bytes) and `npm run fuzz -- --seed=S --only=I` replays it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { captureLogs, runFuzz, type FuzzReport, type LogCapture } from '../helpers/fuzz-harness.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240611);
const COUNT = Number(process.env.FUZZ_COUNT ?? 2000);
const MAX_PACKET = 64 * 1024;

describe('MQTT fuzz (issue 8, SPEC §4)', () => {
  let srv: TestServer;
  let logs: LogCapture;
  let report: FuzzReport;
  // Jest routes uncaught exceptions and unhandled rejections of the run to the running test and fails it;
  // the harness also listens on the process (effective when it runs outside jest, as `npm run fuzz`).
  beforeAll(async () => {
    logs = captureLogs('warn');
    srv = await startTestServer({ log: logs.log, maxPacketSize: MAX_PACKET });
  });
  afterAll(async () => { await srv?.close(); });

  test(`${COUNT} streams (seed ${SEED}): node stays up, refused CONNECTs change nothing, no ghost sessions`, async () => {
    report = await runFuzz(srv, { seed: SEED, count: COUNT, concurrency: 16, waveSize: 48, heartbeatEvery: 100, maxPacketSize: MAX_PACKET, logs });
    const summary = { ...report, violations: report.violations.map((v) => `${v.property}: ${v.detail.slice(0, 300)}`) };
    console.log(JSON.stringify(summary));
    expect(report.violations).toEqual([]);
    expect(report.streams).toBe(COUNT);
    // The run exercised what it claims to: sessions after CONNECT, refusals, both transports.
    expect(report.accepted).toBeGreaterThan(COUNT * 0.3);
    expect(report.byClass.refused).toBeGreaterThan(COUNT * 0.2);
    expect(report.byTransport.ws).toBeGreaterThan(COUNT * 0.2);
    expect(report.taggedMessages).toBeGreaterThan(0);
    expect(report.heartbeats).toBeGreaterThanOrEqual(COUNT / 100);
  }, 180_000);
});
