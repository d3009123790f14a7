// Small awaitable wrappers around MQTT.js and raw sockets for integration tests.
// Every wait has an upper bound that fails the test instead of hanging it.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { connect as netConnect } from 'node:net';
import { within } from './wait.js';

export const WAIT_MS = 5000;

export { within };

let seq = 0;
export function clientId(prefix = 'c'): string {
  return `${prefix}-${process.pid}-${++seq}`;
}

export interface TestClientOptions extends IClientOptions {
  /** Source address (127.0.0.2, ...) to appear as a distinct client IP. */
  localAddress?: string;
}

/** Connects and resolves once CONNACK 0 arrives; rejects on refusal (error with `.code`). */
export function connect(url: string, key: string, opts: TestClientOptions = {}): Promise<MqttClient> {
  const { localAddress, ...rest } = opts;
  const options: IClientOptions = {
    username: key, clientId: clientId(), reconnectPeriod: 0, connectTimeout: WAIT_MS, ...rest,
  };
  if (localAddress && url.startsWith('mqtt://')) {
    // MQTT.js does not pass localAddress to net.connect: build the stream ourselves.
    const u = new URL(url);
    const client = new mqtt.MqttClient(() => netConnect({ host: u.hostname, port: Number(u.port), localAddress }), options);
    return within(new Promise((resolve, reject) => {
      client.once('connect', () => resolve(client));
      client.once('error', (err) => { client.end(true); reject(err); });
      client.once('close', () => reject(new Error('closed before CONNACK')));
    }), (options.connectTimeout ?? WAIT_MS) + 500, 'CONNACK');
  }
  if (localAddress) options.wsOptions = { ...options.wsOptions, localAddress };
  return within(mqtt.connectAsync(url, options, false), (options.connectTimeout ?? WAIT_MS) + 500, 'CONNACK');
}

/** Expects a refused CONNECT; resolves with the CONNACK return code. */
export async function refusedCode(url: string, key: string | undefined, opts: TestClientOptions = {}): Promise<number> {
  try {
    const client = await connect(url, key ?? '', opts);
    await client.endAsync();
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
  throw new Error('CONNECT was accepted');
}

/** Resolves when the client's connection closes (server-side drop). */
export function closed(client: MqttClient, ms = WAIT_MS): Promise<void> {
  if (client.disconnected || (client.stream?.destroyed ?? false)) return Promise.resolve();
  return within(new Promise((resolve) => client.once('close', () => resolve())), ms, 'close');
}

export interface Received { topic: string; payload: string; retain: boolean }

/** Collects messages; `next()` resolves with the next one. */
export function collect(client: MqttClient) {
  const got: Received[] = [];
  const waiters: ((m: Received) => void)[] = [];
  client.on('message', (topic, payload, packet) => {
    const m = { topic, payload: payload.toString(), retain: packet.retain };
    const w = waiters.shift();
    if (w) w(m);
    else got.push(m);
  });
  return {
    messages: got,
    next(ms = WAIT_MS): Promise<Received> {
      const m = got.shift();
      if (m) return Promise.resolve(m);
      return within(new Promise((resolve) => waiters.push(resolve)), ms, 'message');
    },
  };
}

/**
 * Writes raw bytes to the MQTT port and resolves with what the broker answered:
 * the first packet it sent (if any) and whether it closed the socket.
 */
export function rawExchange(port: number, bytes: Buffer, ms = WAIT_MS, localAddress?: string):
  Promise<{ packet: mqttPacket.Packet | null; closed: boolean }> {
  return within(new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1', localAddress });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let packet: mqttPacket.Packet | null = null;
    parser.on('packet', (p) => { packet ??= p; });
    parser.on('error', () => {});
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => {});
    socket.on('close', () => resolve({ packet, closed: true }));
    socket.on('connect', () => socket.write(bytes));
    socket.on('error', reject);
  }), ms, 'raw exchange');
}

export function connectPacket(fields: Partial<mqttPacket.IConnectPacket>): Buffer {
  return mqttPacket.generate({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: clientId('raw'), keepalive: 30,
    ...fields,
  } as mqttPacket.IConnectPacket);
}

/**
 * A raw MQTT 3.1.1 client (mqtt-packet over TCP) that records every packet the
 * broker sends, in order, for tests of packet order and acknowledgements that
 * MQTT.js would hide. By default it acknowledges QoS 1 and 2 deliveries.
 */
export class RawClient {
  /** Every packet received, in order. */
  readonly packets: mqttPacket.Packet[] = [];
  readonly closed: Promise<void>;
  autoAck = true;
  private readonly socket: ReturnType<typeof netConnect>;
  private readonly waiters: { test: (p: mqttPacket.Packet) => boolean; resolve: (p: mqttPacket.Packet) => void }[] = [];
  private nextId = 1;

  constructor(port: number, connect: Partial<mqttPacket.IConnectPacket>) {
    this.socket = netConnect({ port, host: '127.0.0.1' });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => this.received(p));
    parser.on('error', () => this.socket.destroy());
    this.socket.on('data', (d) => parser.parse(d));
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) => this.socket.on('close', () => resolve()));
    this.socket.on('connect', () => this.send({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: clientId('raw'), keepalive: 30, ...connect,
    } as mqttPacket.IConnectPacket));
  }

  send(packet: mqttPacket.Packet): void {
    if (!this.socket.destroyed) this.socket.write(mqttPacket.generate(packet));
  }

  /** The first recorded packet that passes `test` (already received or still to come). */
  wait(test: (p: mqttPacket.Packet) => boolean, ms = WAIT_MS, what = 'packet'): Promise<mqttPacket.Packet> {
    const found = this.packets.find(test);
    if (found) return Promise.resolve(found);
    return within(new Promise((resolve) => this.waiters.push({ test, resolve })), ms, what);
  }

  /** Subscribes and resolves with the SUBACK's granted list. */
  async subscribe(subscriptions: { topic: string; qos: 0 | 1 | 2 }[]): Promise<number[]> {
    const messageId = this.nextId++;
    this.send({ cmd: 'subscribe', messageId, subscriptions });
    const suback = await this.wait((p) => p.cmd === 'suback' && p.messageId === messageId, WAIT_MS, 'SUBACK');
    return (suback as mqttPacket.ISubackPacket).granted as number[];
  }

  publishes(): mqttPacket.IPublishPacket[] {
    return this.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');
  }

  /** DISCONNECT, then close. */
  async end(): Promise<void> {
    this.send({ cmd: 'disconnect' });
    this.socket.end();
    await within(this.closed, WAIT_MS, 'close');
  }

  destroy(): void {
    this.socket.destroy();
  }

  private received(p: mqttPacket.Packet): void {
    this.packets.push(p);
    if (this.autoAck && p.cmd === 'publish' && p.qos === 1) this.send({ cmd: 'puback', messageId: p.messageId });
    if (this.autoAck && p.cmd === 'publish' && p.qos === 2) this.send({ cmd: 'pubrec', messageId: p.messageId });
    if (this.autoAck && p.cmd === 'pubrel') this.send({ cmd: 'pubcomp', messageId: p.messageId });
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i]!;
      if (w.test(p)) {
        this.waiters.splice(i--, 1);
        w.resolve(p);
      }
    }
  }
}
