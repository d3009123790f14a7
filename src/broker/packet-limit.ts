// A ceiling on MQTT packet size. Aedes and mqtt-packet accept up to the
// protocol's 256 MB and buffer a packet until it is complete, so one client
// announcing a huge CONNECT or PUBLISH could hold that much memory. The
// remaining length is known as soon as the fixed header is read: refuse there.
import type { Client } from 'aedes';

interface ParserInternals {
  _parseLength(): boolean;
  _emitError(err: Error): void;
  packet: { length: number };
}

/**
 * Wraps the length step of the client's mqtt-packet parser (once per
 * connection; one comparison per packet). The parser's error makes Aedes close
 * the connection.
 */
export function limitPacketSize(client: Client, maxBytes: number, onExceeded: (announced: number) => void): void {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser;
  if (!parser || maxBytes <= 0 || typeof parser._parseLength !== 'function') return;
  const parseLength = parser._parseLength.bind(parser);
  parser._parseLength = (): boolean => {
    if (!parseLength()) return false;
    if (parser.packet.length <= maxBytes) return true;
    onExceeded(parser.packet.length);
    parser._emitError(new Error(`packet of ${parser.packet.length} bytes exceeds the limit of ${maxBytes}`));
    return false;
  };
}
