// MQTT over WebSocket as the Duplex that Aedes reads and writes, in place of
// ws's createWebSocketStream (SPEC §1 WS/WSS listeners).
//
// Why not createWebSocketStream: mqtt-packet writes a packet as 4–6 small
// chunks inside cork()/uncork(), and that stream has no _writev: every chunk
// becomes its own WebSocket frame, and the next chunk waits for the previous
// one's socket write callback. Deliveries over WebSocket ran ~6× slower than
// over TCP. Here the bytes a client is sent during one event-loop iteration
// (Aedes writes each delivery from its own setImmediate) are gathered and sent
// as ONE binary frame from a setImmediate of ours, which MQTT allows: a frame
// may hold several or partial packets ([MQTT-6.0.0-2]: receivers must not
// assume alignment). The added latency is one loop iteration.
//
// Backpressure (Aedes has no outbound inflight window, so a client that does not
// read would otherwise grow the broker's memory without bound):
// - `sendBufferCap` bounds the bytes held for the client: ws.bufferedAmount (the
//   socket's write buffer) plus the frame being gathered; the kernel's socket
//   buffers come on top.
// - A QoS 0 PUBLISH that starts while the buffer is at the cap is dropped
//   whole and counted (`onDrop`): QoS 0 is at most once, and a slow dashboard
//   must not stall the broker's fan-out for everyone else. If the frame being
//   gathered is what reaches the cap, it is sent first and the socket's own
//   buffer decides: a client that keeps up loses nothing, however big a burst.
// - A frame that takes the buffer to the cap is followed by a wait until it is
//   flushed to the kernel (its ws.send callback). During the wait reads from the
//   client are paused (so a client that floods requests but reads no answers
//   cannot grow its PUBACKs/PINGRESPs without bound), and if the frame carries
//   a QoS 1/2 PUBLISH or a PUBREL the write callback is held too: the Writable
//   then buffers and write() returns false, which is Aedes' own backpressure
//   (it waits for 'drain'). Nothing of QoS > 0 is ever dropped.
//
// Which bytes belong to which packet: the chunks are not packet-aligned in
// general, so the outgoing byte stream is followed with the MQTT framing itself
// (fixed header byte, then the variable-length Remaining Length, then that many
// bytes; MQTT 3.1.1 §2.2), kept across calls. The first byte gives the packet
// type (high nibble) and, for PUBLISH, the QoS (bits 2-1). Payload bytes are
// skipped by length, never scanned.
//
// Reads: each binary message is pushed as is; when push() returns false the
// socket is paused until _read. A text frame closes the connection
// ([MQTT-6.0.0-1]). Close and error behave as createWebSocketStream's do
// (ws 8.23 lib/stream.js), which is what Aedes was written against.
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';

/**
 * Default cap on the bytes held for one WebSocket client: 1 MiB.
 * - Above a healthy client's needs: a fast link's bandwidth-delay product
 *   (80 Mbit/s × 100 ms RTT ≈ 1 MB), or a second of a busy dashboard (1,000
 *   messages/s of 1 KB). A client this far behind is not keeping up.
 * - Not in the way of big messages: a packet is dropped only if the buffer is
 *   already at the cap when it starts, so one of MAX_PACKET_SIZE (1 MiB by
 *   default) or more still goes to a client that is keeping up.
 * - Bounded memory: at most the cap plus one packet per client (≈ 1 GiB for
 *   1,000 stalled clients), where Aedes alone has no bound.
 */
export const WS_SEND_BUFFER_CAP = 1024 * 1024;

export interface WsStreamOptions {
  /** Bytes held (ws.bufferedAmount + the frame being gathered) at which QoS 0 PUBLISH packets are dropped and the rest wait. */
  sendBufferCap?: number;
  /** Called with the number of QoS 0 PUBLISH packets dropped by one write. */
  onDrop?: (count: number) => void;
}

const PUBLISH = 3;
const PUBREL = 6;
const BINARY = { binary: true } as const;

type WriteCallback = (err?: Error | null) => void;

export class WsStream extends Duplex {
  readonly #ws: WebSocket;
  readonly #socket: Socket;
  readonly #cap: number;
  readonly #onDrop: ((count: number) => void) | undefined;
  #terminateOnDestroy = true;
  // Outgoing MQTT framing, across _writev calls.
  #body = 0;
  #inLength = false;
  #length = 0;
  #multiplier = 1;
  #dropping = false;
  // Bytes written in this loop iteration, sent as one frame by #flushSoon (setImmediate).
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #flushScheduled = false;
  // Flow control.
  #unflushed = 0;
  #held: WriteCallback | null = null;
  #readFull = false;
  /** QoS 0 PUBLISH packets dropped on this connection. */
  dropped = 0;

  constructor(ws: WebSocket, socket: Socket, opts: WsStreamOptions = {}) {
    super({ autoDestroy: false, emitClose: false, objectMode: false, decodeStrings: true });
    this.#ws = ws;
    this.#socket = socket;
    this.#cap = opts.sendBufferCap ?? WS_SEND_BUFFER_CAP;
    this.#onDrop = opts.onDrop;

    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (this.destroyed) return;
      if (!isBinary) {
        // [MQTT-6.0.0-1] MQTT Control Packets travel in binary frames; any other data frame closes the connection.
        this.destroy(new Error('text WebSocket frame: MQTT needs binary frames [MQTT-6.0.0-1]'));
        return;
      }
      // Server-side ws delivers a Buffer (binaryType 'nodebuffer'); fragments are already joined.
      if (!this.push(data as Buffer)) {
        this.#readFull = true;
        this.#updatePause();
      }
    });
    ws.once('error', (err: Error) => {
      if (this.destroyed) return;
      // ws closes the connection itself (sending a close frame); terminating now would cut that frame off.
      this.#terminateOnDestroy = false;
      this.destroy(err);
    });
    ws.once('close', () => {
      this.#release();
      if (this.destroyed) return;
      this.push(null);
    });
    this.on('end', onEnd);
    this.on('error', onError);
  }

  /** Bytes held for this client: its socket's write buffer and the frame being gathered. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount + this.#pendingBytes;
  }

  override _read(): void {
    this.#readFull = false;
    this.#updatePause();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#send([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: WriteCallback): void {
    const buffers: Buffer[] = new Array<Buffer>(chunks.length);
    for (let i = 0; i < chunks.length; i++) buffers[i] = chunks[i]!.chunk;
    this.#send(buffers, callback);
  }

  #send(chunks: Buffer[], callback: WriteCallback): void {
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN) {
      callback(new Error(`WebSocket is not open: readyState ${ws.readyState}`));
      return;
    }
    const cap = this.#cap;
    const parts = this.#pending;
    // Bytes already on their way to this client: ws's buffer and what waits for the next flush.
    let base = ws.bufferedAmount;
    let kept = this.#pendingBytes;
    let dropped = 0;
    let delivery = false;
    let atCap = false; // a frame was sent at the cap: its flush is waited for
    for (const buf of chunks) {
      const len = buf.length;
      let off = 0;
      let run = 0; // start of the current run of bytes that share #dropping
      while (off < len) {
        if (this.#body > 0) {
          const n = Math.min(this.#body, len - off);
          this.#body -= n;
          off += n;
          continue;
        }
        const byte = buf[off]!;
        off++;
        if (this.#inLength) {
          // Remaining Length: 7 bits per byte, least significant first; bit 8 says more follow (MQTT 3.1.1 §2.2.3).
          this.#length += (byte & 0x7f) * this.#multiplier;
          this.#multiplier *= 128;
          if ((byte & 0x80) === 0) {
            this.#inLength = false;
            this.#body = this.#length;
          }
          continue;
        }
        // First byte of a packet: close the run before it, then decide this packet's fate.
        const start = off - 1;
        if (!this.#dropping && start > run) {
          parts.push(buf.subarray(run, start));
          kept += start - run;
        }
        run = start;
        const type = byte >> 4;
        const qos = (byte >> 1) & 3;
        const qos0Publish = type === PUBLISH && qos === 0;
        if (qos0Publish && base < cap && base + kept >= cap) {
          // The frame being gathered takes the buffer to the cap by itself: hand it to the socket now and
          // judge this QoS 0 PUBLISH by what the socket then really holds. Judging by the gathered bytes
          // dropped QoS 0 for a client that reads as fast as we send (ws.bufferedAmount 0) whenever one
          // burst of writes crossed the cap. (If the socket already holds the cap, nothing can change that.)
          this.#pendingBytes = kept;
          kept = 0;
          this.#sendAtCap();
          atCap = true;
          base = ws.bufferedAmount;
        }
        this.#dropping = qos0Publish && base + kept >= cap;
        if (this.#dropping) dropped++;
        else if ((type === PUBLISH && qos > 0) || type === PUBREL) delivery = true;
        this.#inLength = true;
        this.#length = 0;
        this.#multiplier = 1;
      }
      if (!this.#dropping && len > run) {
        parts.push(run === 0 ? buf : buf.subarray(run));
        kept += len - run;
      }
    }
    this.#pendingBytes = kept;
    if (dropped > 0) {
      this.dropped += dropped;
      this.#onDrop?.(dropped);
    }
    if (base + kept >= cap) {
      // These bytes take the buffer to the cap: send now, and wait for them to reach the kernel.
      this.#sendAtCap();
      atCap = true;
    } else if (kept > 0 && !this.#flushScheduled) {
      // The common case: sent with whatever else this client gets in this loop iteration.
      this.#flushScheduled = true;
      setImmediate(this.#flushSoon);
    }
    // A QoS 1/2 PUBLISH or PUBREL written while frames sent at the cap are unflushed holds its callback
    // (Aedes' backpressure); #flushed releases it. Checked after the sends: a callback is never held with
    // no flush left to release it.
    if (atCap && delivery && this.#unflushed > 0) this.#held = callback;
    else callback();
  }

  /** Sends what is pending now, reads pause until it reaches the kernel (#flushed). */
  #sendAtCap(): void {
    this.#unflushed++;
    this.#updatePause();
    this.#flush(this.#flushed);
  }

  /** Sends what is pending as one binary frame; `onSent` is ws.send's callback (the frame reached the kernel). */
  #flush(onSent?: (err?: Error) => void): void {
    const parts = this.#pending;
    const bytes = this.#pendingBytes;
    if (bytes === 0) {
      if (onSent) process.nextTick(onSent);
      return;
    }
    const frame = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
    parts.length = 0;
    this.#pendingBytes = 0;
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(frame, BINARY, onSent);
    else if (onSent) process.nextTick(onSent);
  }

  readonly #flushSoon = (): void => {
    this.#flushScheduled = false;
    this.#flush();
  };

  /** ws.send callback of a frame sent at the cap (called with an error too when the socket goes away). */
  readonly #flushed = (): void => {
    if (this.#unflushed === 0) return; // already released by 'close'
    if (--this.#unflushed > 0) return;
    const held = this.#held;
    this.#held = null;
    this.#updatePause();
    held?.();
  };

  /** The connection is gone: nothing will flush any more. */
  #release(): void {
    this.#pending.length = 0;
    this.#pendingBytes = 0;
    this.#unflushed = 0;
    const held = this.#held;
    this.#held = null;
    held?.();
  }

  #updatePause(): void {
    const ws = this.#ws;
    const pause = this.#readFull || this.#unflushed > 0;
    if (pause !== ws.isPaused) {
      if (pause) ws.pause();
      else ws.resume();
    }
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#flush();
    const socket = this.#socket;
    if (socket.writableFinished) {
      callback();
      if (this.readableEnded) this.destroy();
      return;
    }
    // The readable side ends when ws emits 'close' (push(null) above); 'end' then destroys.
    socket.once('finish', () => callback());
    this.#ws.close();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const ws = this.#ws;
    if (ws.readyState === WebSocket.CLOSED) {
      this.#release();
      callback(err);
      process.nextTick(emitClose, this);
      return;
    }
    let called = false;
    ws.once('error', (e: Error) => {
      called = true;
      callback(e);
    });
    ws.once('close', () => {
      if (!called) callback(err);
      process.nextTick(emitClose, this);
    });
    if (this.#terminateOnDestroy) {
      // What was written before destroy() (a refusing CONNACK, say) goes out first, as
      // createWebSocketStream sent every write at once.
      this.#flush();
      ws.terminate();
    }
  }
}

function emitClose(stream: Duplex): void {
  stream.emit('close');
}

/** Both sides done: release the connection (as createWebSocketStream does). */
function onEnd(this: Duplex): void {
  if (!this.destroyed && this.writableFinished) this.destroy();
}

/** An error destroys the stream; it is re-thrown only if nobody else listens (as createWebSocketStream does). */
function onError(this: Duplex, err: Error): void {
  this.removeListener('error', onError);
  this.destroy();
  if (this.listenerCount('error') === 0) this.emit('error', err);
}
