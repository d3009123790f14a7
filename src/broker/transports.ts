// Listeners (SPEC §1): MQTT over TCP, over WebSocket on /mqtt (ws 8 with our
// WsStream, see ws-stream.ts), and their TLS twins when a cert and key are given.
// Each one records the client IP and transport before Aedes sees the stream.
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type BlockList, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { normalizeIp } from '../tokens/index.js';
import { clientIpFrom, isTrusted } from '../access/client-ip.js';
import { readProxyHeader } from './proxy-protocol.js';
import type { ConnectionInfo, Transport } from './sessions.js';
import { WS_SEND_BUFFER_CAP, WsStream } from './ws-stream.js';

export interface ListenOptions {
  host: string;
  mqttPort: number;
  wsPort: number;
  /** Both set: MQTTS and WSS listeners too. */
  tls?: { cert: Buffer; key: Buffer; mqttsPort: number; wssPort: number };
  /** Require a PROXY v1/v2 header on the plain TCP listener, from peers in `trustProxy` only (SPEC §1). */
  proxyProtocol: boolean;
  /** TRUST_PROXY: peers whose PROXY header (TCP) and X-Forwarded-For (WebSocket) are believed. */
  trustProxy?: BlockList;
  /** How long a trusted peer has to complete its PROXY header (default 5 s). */
  proxyHeaderTimeoutMs?: number;
  /** Largest WebSocket message accepted (bytes). */
  wsMaxPayload?: number;
  /** TCP_NODELAY on MQTT and MQTTS sockets (SPEC §1; default off, Nagle on). */
  tcpNoDelay?: boolean;
  /** Bytes buffered for one WebSocket client beyond which QoS 0 deliveries are dropped (default WS_SEND_BUFFER_CAP). */
  wsSendBufferCap?: number;
  /** Counts QoS 0 deliveries dropped for slow WebSocket clients. */
  onWsDrop?: (count: number) => void;
}

export interface Listeners {
  ports: { mqtt: number; ws: number; mqtts?: number; wss?: number };
  /**
   * Stops accepting. Resolves once every connection has ended: the broker closes
   * its clients first, then `destroyConnections` ends what is left (sockets that never sent CONNECT).
   */
  close(): Promise<void>;
  destroyConnections(): void;
}

type Handle = (stream: Duplex, info: ConnectionInfo, req?: IncomingMessage) => void;

function listen(server: Server | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function mqttOverTcp(handle: Handle, transport: Transport, opts: ListenOptions, log: Logger) {
  // SPEC §1: PROXY protocol on the plain TCP listener only; MQTTS clients are judged by their socket peer.
  const proxied = opts.proxyProtocol && transport === 'tcp';
  return (socket: Socket): void => {
    if (opts.tcpNoDelay) socket.setNoDelay(true);
    const peer = normalizeIp(socket.remoteAddress ?? '');
    if (!proxied) return handle(socket, { ip: peer, transport, socket });
    socket.on('error', () => {}); // until Aedes attaches its own
    // SPEC §1: a PROXY header names any address its sender likes (dodging `ips` and the
    // brute-force guard, or locking out someone else's address): only a peer in
    // TRUST_PROXY may send one. Anyone else is closed before a byte is read.
    if (!isTrusted(opts.trustProxy, peer)) {
      log.warn({ ip: peer, transport }, 'connection closed: PROXY protocol from a peer outside TRUST_PROXY');
      socket.destroy();
      return;
    }
    readProxyHeader(socket, opts.proxyHeaderTimeoutMs).then((ip) => {
      // No address in the header (LOCAL health check, UNSPEC, UNKNOWN): the balancer itself.
      handle(socket, { ip: ip ? normalizeIp(ip) : peer, transport, socket });
    }, (err: Error) => {
      log.info({ ip: peer, reason: err.message }, 'connection dropped: bad PROXY header');
      socket.destroy();
    });
  };
}

function mqttOverWs(server: HttpServer, handle: Handle, transport: Transport, opts: ListenOptions, log: Logger): WebSocketServer {
  const wss = new WebSocketServer({
    server,
    path: '/mqtt',
    maxPayload: opts.wsMaxPayload ?? 16 * 1024 * 1024,
    // MQTT over WebSocket names its subprotocol 'mqtt' (or 'mqttv3.1'); accept what the client offers.
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  wss.on('connection', (ws, req) => {
    const ip = clientIpFrom(req.socket.remoteAddress, req.headers['x-forwarded-for'], opts.trustProxy);
    const cap = opts.wsSendBufferCap ?? WS_SEND_BUFFER_CAP;
    const stream = new WsStream(ws, req.socket, {
      sendBufferCap: cap,
      onDrop: (count) => {
        if (stream.dropped === count) log.info({ ip, cap }, 'websocket client reads too slowly: dropping its QoS 0 deliveries');
        opts.onWsDrop?.(count);
      },
    });
    stream.on('error', () => {});
    ws.on('error', (err) => log.debug({ ip, err: err.message }, 'websocket error'));
    handle(stream, { ip, transport, socket: req.socket }, req);
  });
  wss.on('error', (err) => log.error({ err }, 'websocket server error'));
  return wss;
}

export async function startListeners(handle: Handle, opts: ListenOptions, log: Logger): Promise<Listeners> {
  // loadConfig refuses this combination; a caller that skips it gets an error, not a listener that closes every connection.
  if (opts.proxyProtocol && !opts.trustProxy) throw new Error('PROXY_PROTOCOL needs TRUST_PROXY');
  const servers: (Server | HttpServer)[] = [];
  const wsServers: WebSocketServer[] = [];
  // Every open socket, for destroyConnections. Pruned of closed ones as it grows rather
  // than by a 'close' listener per socket: a third 'close' listener makes Node grow the
  // socket's listener array to 20 slots (issue 9: memory per session).
  const sockets = new Set<Socket>();
  let pruneAt = 1024;
  const started = async (server: Server | HttpServer, port: number): Promise<number> => {
    servers.push(server);
    server.on('error', (err) => log.error({ err }, 'listener error'));
    server.on('connection', (socket: Socket) => {
      if (sockets.size >= pruneAt) {
        for (const s of sockets) if (s.destroyed) sockets.delete(s);
        pruneAt = Math.max(1024, 2 * sockets.size);
      }
      sockets.add(socket);
    });
    return listen(server, port, opts.host);
  };
  try {
    const tcp = createNetServer(mqttOverTcp(handle, 'tcp', opts, log));
    const mqtt = await started(tcp, opts.mqttPort);
    const wsHttp = createHttpServer((_req, res) => { res.writeHead(426).end('MQTT over WebSocket: connect to /mqtt\n'); });
    wsServers.push(mqttOverWs(wsHttp, handle, 'ws', opts, log));
    const ws = await started(wsHttp, opts.wsPort);
    const ports: Listeners['ports'] = { mqtt, ws };
    if (opts.tls) {
      const tlsServer = createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, mqttOverTcp(handle, 'tls', opts, log));
      tlsServer.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
      ports.mqtts = await started(tlsServer, opts.tls.mqttsPort);
      const httpsServer = createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key });
      wsServers.push(mqttOverWs(httpsServer, handle, 'wss', opts, log));
      ports.wss = await started(httpsServer, opts.tls.wssPort);
    }
    return {
      ports,
      close: async () => {
        for (const w of wsServers) w.close();
        await Promise.all(servers.map(closeServer));
      },
      destroyConnections: () => {
        for (const socket of sockets) socket.destroy();
      },
    };
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    throw err;
  }
}
