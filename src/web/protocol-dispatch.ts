// Hands each connection of the web port to the Node server for its protocol: HTTP/1.1 (curl, browsers without
// TLS) or HTTP/2 (browsers over TLS; Connect and gRPC-Web clients that ask for it). Under TLS, ALPN says which;
// in plaintext, the first bytes (HTTP/2 with prior knowledge, h2c, opens with a fixed preface that no HTTP/1.1
// request line starts like). One dispatch for both keeps one set of timeouts and limits for every connection.
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface ProtocolServers {
  h1: http.Server;
  h2: http2.Http2Server;
}

/** `firstBytesTimeoutMs`: a connection that sends nothing (or part of the preface) for this long is closed. */
export function plaintextListener({ h1, h2 }: ProtocolServers, firstBytesTimeoutMs: number): net.Server {
  return net.createServer((socket) => {
    let seen = Buffer.alloc(0);
    const drop = () => socket.destroy();
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && n < H2_PREFACE.length) return; // a prefix of the preface: wait for the rest
      socket.off('data', onData);
      socket.off('error', drop);
      socket.off('timeout', drop);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      (isH2 ? h2 : h1).emit('connection', socket);
      // The HTTP/1.1 parser reads from a flowing socket; resume once it has attached, so the unshifted bytes reach it.
      process.nextTick(() => socket.resume());
    };
    socket.on('error', drop); // until a server owns the socket, its errors are ours to swallow
    socket.setTimeout(firstBytesTimeoutMs);
    socket.on('timeout', drop);
    socket.on('data', onData);
  });
}

/** TLS with ALPN offering h2 and http/1.1; a client that offers neither gets HTTP/1.1. */
export function tlsListener({ h1, h2 }: ProtocolServers, options: tls.TlsOptions): tls.Server {
  const server = tls.createServer({ ...options, ALPNProtocols: ['h2', 'http/1.1'] }, (socket) => {
    (socket.alpnProtocol === 'h2' ? h2 : h1).emit('connection', socket);
  });
  // A failed or stalled handshake: with a listener here, closing the socket is ours to do.
  server.on('tlsClientError', (_e, socket) => socket.destroy());
  return server;
}
