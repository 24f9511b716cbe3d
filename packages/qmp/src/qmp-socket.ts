// Serving QMP on a Unix socket (QEMU's `-qmp unix:PATH,server=on,wait=off`): every connection is a
// session. A client that stops reading is dropped once its unsent output passes a bound, so that
// it cannot make the VMM buffer without end.

import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { ConfigError } from '@vmmkit/core';
import type { QmpPeer, QmpSession } from './protocol/qmp-session.js';

/** The most output a client may leave unread before it is dropped, unless told otherwise. */
export const MAX_UNREAD_BYTES = 16 << 20;

/** How a QMP socket serves its clients. */
export interface QmpSocketOptions {
  /** Drop a client once this much of its output is unread (default {@link MAX_UNREAD_BYTES}). */
  readonly maxUnreadBytes?: number;
}

/** A listening QMP socket. */
export interface QmpListener {
  readonly path: string;
  /** Stop accepting, and remove the socket file. Open sessions are the server's to end. */
  close(): Promise<void>;
}

/**
 * Listen on `path`; a stale socket file there is replaced (as QEMU does), anything else is not.
 * @throws ConfigError (option `qmp`) naming the path when something that is not a socket is there,
 *   or it cannot be bound (the system's error is the cause).
 */
export async function listenUnix(path: string, connect: (peer: QmpPeer) => QmpSession, options: QmpSocketOptions = {}): Promise<QmpListener> {
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new ConfigError(`QMP socket ${path}: the path exists and is not a socket`, 'qmp', path);
    unlinkSync(path);
  }
  const maxUnread = options.maxUnreadBytes ?? MAX_UNREAD_BYTES;
  const server = net.createServer((socket) => serve(socket, connect, maxUnread));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new ConfigError(`QMP socket ${path}: cannot listen (${e.code ?? e.message})`, 'qmp', path, { cause: e })));
    server.listen({ path }, () => resolve());
  });
  let closed = false;
  return {
    path,
    close: async () => {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (existsSync(path)) unlinkSync(path);
    },
  };
}

function serve(socket: net.Socket, connect: (peer: QmpPeer) => QmpSession, maxUnread: number): void {
  const session = connect({
    write: (text) => {
      if (socket.destroyed) return;
      socket.write(text);
      if (socket.writableLength > maxUnread) socket.destroy();
    },
    end: () => {
      if (!socket.destroyed) socket.end(() => socket.destroy());
    },
  });
  socket.on('data', (chunk: Buffer) => session.receive(chunk));
  socket.on('close', () => session.end());
  // A reset by the client ends its session like a close; nothing else is disturbed.
  socket.on('error', () => socket.destroy());
}
