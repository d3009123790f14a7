// A ceiling on MQTT packet size. Aedes and mqtt-packet accept up to the
// protocol's 256 MB and buffer a packet until it is complete, so one client
// announcing a huge CONNECT or PUBLISH could hold that much memory. The
// remaining length is known as soon as the fixed header is read: refuse there.
import type { Client } from 'aedes';
import { parserOf, type ParserInternals } from './aedes-internals.js';

/**
 * Returns what installs the ceiling on a client's mqtt-packet parser: its
 * length step is replaced by one function shared by every connection (no
 * closure per connection; one comparison per packet). The parser's error
 * makes Aedes close the connection.
 */
export function createPacketLimit(maxBytes: number, onExceeded: (client: Client | undefined, announced: number) => void): (client: Client) => void {
  if (maxBytes <= 0) return () => {};
  let parseLength: (() => boolean) | null = null;
  function limitedParseLength(this: ParserInternals): boolean {
    if (!(parseLength as () => boolean).call(this)) return false;
    if (this.packet.length <= maxBytes) return true;
    onExceeded(this.client, this.packet.length);
    this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${maxBytes}`));
    return false;
  }
  return (client: Client): void => {
    const parser = parserOf(client);
    if (!parser || typeof parser._parseLength !== 'function' || parser._parseLength === limitedParseLength) return;
    parseLength ??= parser._parseLength;
    parser._parseLength = limitedParseLength;
  };
}
