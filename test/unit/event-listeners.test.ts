// event-listeners.ts: who listens to SPEC §8 events, on this node and on the others.
import { afterEach, describe, expect, jest, test } from '@jest/globals';
import type { Aedes } from 'aedes';
import { pino } from 'pino';
import { EventListeners, LISTENERS_TOPIC, LISTENER_TTL_MS, STARTUP_GRACE_MS, canMatchEvents } from '../../src/broker/event-listeners.js';

type Fn = (packet: { topic: string; payload: Buffer }, cb: () => void) => void;

/** An Aedes stand-in: subscribe/unsubscribe record calls; the emitter delivers LISTENERS_TOPIC to every node's listener. */
function fakeNode(bus: Fn[], sent: string[]) {
  const subscribed: string[] = [];
  const aedes = {
    mq: {
      on(topic: string, fn: Fn, done?: () => void) {
        if (topic === LISTENERS_TOPIC) bus.push(fn);
        done?.();
      },
      emit(packet: { topic: string; payload: Buffer }, cb?: () => void) {
        sent.push(packet.payload.toString());
        for (const fn of bus) fn(packet, () => {});
        cb?.();
      },
    },
    subscribe(topic: string, _fn: unknown, done?: () => void) { subscribed.push(topic); done?.(); },
    unsubscribe(_topic: string, _fn: unknown, done?: () => void) { done?.(); },
  };
  return { aedes: aedes as unknown as Aedes & typeof aedes, subscribed };
}

const log = pino({ level: 'silent' });

afterEach(() => {
  jest.useRealTimers();
});

describe('EventListeners (issue 11: events published only while someone listens)', () => {
  test('filters that can receive an event: those under `$tokenmq/` only; `#` and `+/…` never match a `$` topic [MQTT-4.7.2-1]', () => {
    expect(canMatchEvents('$tokenmq/events/#')).toBe(true);
    expect(canMatchEvents('$tokenmq/+/connected/7')).toBe(true);
    expect(canMatchEvents('#')).toBe(false);
    expect(canMatchEvents('+/events/#')).toBe(false);
    expect(canMatchEvents('$SYS/#')).toBe(false);
  });

  test('this node: listening from the first matching subscription to the last one removed, each counted once', () => {
    const { aedes } = fakeNode([], []);
    const l = new EventListeners('n1', log, false);
    l.attach(aedes);
    expect(l.any).toBe(false);
    const f1 = () => {};
    const f2 = () => {};
    aedes.subscribe('devices/#', f1, () => {});
    expect(l.any).toBe(false);
    aedes.subscribe('$tokenmq/events/#', f1, () => {});
    aedes.subscribe('$tokenmq/events/#', f1, () => {}); // Aedes re-subscribing the same listener
    aedes.subscribe('$tokenmq/events/connected/+', f2, () => {});
    aedes.unsubscribe('$tokenmq/events/#', f1, () => {});
    expect(l.any).toBe(true);
    aedes.unsubscribe('$tokenmq/events/#', f1, () => {}); // a second unsubscribe of the same one changes nothing
    expect(l.any).toBe(true);
    aedes.unsubscribe('$tokenmq/events/connected/+', f2, () => {});
    expect(l.any).toBe(false);
    l.stop();
  });

  test('the SUBACK of the first listener waits until the other nodes were told', () => {
    const bus: Fn[] = [];
    const a = fakeNode(bus, []);
    const b = fakeNode(bus, []);
    const la = new EventListeners('a', log, true);
    const lb = new EventListeners('b', log, true);
    la.attach(a.aedes);
    lb.attach(b.aedes);
    let acked = false;
    const order: string[] = [];
    a.aedes.mq.emit = ((emit) => (packet: { topic: string; payload: Buffer }, cb?: () => void) => {
      emit(packet, () => { order.push('told'); cb?.(); });
    })(a.aedes.mq.emit);
    a.aedes.subscribe('$tokenmq/events/#', () => {}, () => { acked = true; order.push('suback'); });
    expect(acked).toBe(true);
    expect(order).toEqual(['told', 'suback']);
    la.stop();
    lb.stop();
  });

  test('other nodes: told on start and stop, asked by a node that starts; a node not heard from for LISTENER_TTL_MS, or reported down, is forgotten', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const bus: Fn[] = [];
    const a = fakeNode(bus, []);
    const la = new EventListeners('a', log, true);
    la.attach(a.aedes);
    const fa = () => {};
    a.aedes.subscribe('$tokenmq/events/#', fa, () => {});
    // b starts after a listens: it asks, a answers.
    const b = fakeNode(bus, []);
    const lb = new EventListeners('b', log, true);
    lb.attach(b.aedes);
    jest.advanceTimersByTime(STARTUP_GRACE_MS + 1);
    expect(lb.any).toBe(true);
    a.aedes.unsubscribe('$tokenmq/events/#', fa, () => {});
    expect(lb.any).toBe(false);
    a.aedes.subscribe('$tokenmq/events/#', fa, () => {});
    expect(lb.any).toBe(true);
    // a goes quiet (died): its word lapses.
    bus.splice(0, bus.length, ...bus.filter((_fn, i) => i !== 0));
    la.stop();
    jest.advanceTimersByTime(LISTENER_TTL_MS + 1);
    expect(lb.any).toBe(false);
    // Reported down by the session directory: forgotten at once.
    const c = fakeNode(bus, []);
    const lc = new EventListeners('c', log, true);
    lc.attach(c.aedes);
    c.aedes.subscribe('$tokenmq/events/#', () => {}, () => {});
    expect(lb.any).toBe(true);
    lb.forget('c');
    expect(lb.any).toBe(false);
    lb.stop();
    lc.stop();
  });

  test('a starting cluster node publishes during its grace period; a single node never waits for others', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const l = new EventListeners('x', log, true);
    l.attach(fakeNode([], []).aedes);
    expect(l.any).toBe(true);
    jest.advanceTimersByTime(STARTUP_GRACE_MS + 1);
    expect(l.any).toBe(false);
    const single = new EventListeners('y', log, false);
    single.attach(fakeNode([], []).aedes);
    expect(single.any).toBe(false);
    l.stop();
    single.stop();
  });

  test('announcements that are not JSON, or name no node, are ignored', () => {
    const bus: Fn[] = [];
    const l = new EventListeners('x', log, false);
    l.attach(fakeNode(bus, []).aedes);
    for (const payload of ['{', '[]', '{"listening":true}', '{"node":5,"listening":true}']) bus[0]!({ topic: LISTENERS_TOPIC, payload: Buffer.from(payload) }, () => {});
    expect(l.any).toBe(false);
    l.stop();
  });
});
