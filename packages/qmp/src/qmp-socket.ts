// Serving QMP on a Unix socket (QEMU's `-qmp unix:PATH,server=on,wait=off`): every connection is a
// session. The connection is core's byte stream with SCM_RIGHTS, so clients pass descriptors as
// libvirt does (getfd, add-fd). A client that stops reading is dropped once its unsent output
// passes a bound, so that it cannot make the VMM buffer without end.

import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { closeReceivedFds, ConfigError, HostError, UnixStreamListener, type UnixStream } from '@vmmkit/core';
import type { QmpPeer, QmpSession, ReceivedFd } from './protocol/qmp-session.js';

/** The most output a client may leave unread before it is dropped, unless told otherwise. */
export const MAX_UNREAD_BYTES = 16 << 20;

/** How a QMP socket serves its clients. */
export interface QmpSocketOptions {
  /** Drop a client once this much of its output is unread (default {@link MAX_UNREAD_BYTES}). */
  readonly maxUnreadBytes?: number;
  /**
   * How a descriptor a client passed (one of this process's) becomes one of the VM's host, which
   * the commands then use and close there: the identity for this process's kernel (LinuxHost),
   * the simulated host's `adoptProcessFd`. It owns the fd from the call, closing it when it
   * throws. Without it descriptors are closed on arrival and getfd / add-fd find none. The
   * server's default follows its VM's host.
   */
  readonly adoptFd?: (fd: number) => number;
}

/** A listening QMP socket. */
export interface QmpListener {
  readonly path: string;
  /**
   * Stop accepting, remove the socket file, and close the connections still open (sessions the
   * server ended whose last output a client left unread).
   */
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
  const adoptFd = options.adoptFd;
  // Connections still open: a hung-up client whose last answer is unread lingers until this closes.
  const streams = new Set<UnixStream>();
  let listener: UnixStreamListener;
  try {
    listener = UnixStreamListener.listen(path, (stream) => serve(stream, connect, maxUnread, adoptFd, streams));
  } catch (e) {
    const why = e instanceof HostError ? `${e.syscall}: ${e.errno}` : e instanceof Error ? e.message : String(e);
    throw new ConfigError(`QMP socket ${path}: cannot listen (${why})`, 'qmp', path, { cause: e });
  }
  return {
    path,
    close: () => {
      listener.close();
      for (const stream of [...streams]) stream.close();
      return Promise.resolve();
    },
  };
}

function serve(stream: UnixStream, connect: (peer: QmpPeer) => QmpSession, maxUnread: number, adoptFd: ((fd: number) => number) | undefined, streams: Set<UnixStream>): void {
  streams.add(stream);
  const session = connect({
    write: (text) => {
      stream.send(Buffer.from(text));
      if (stream.queuedBytes > maxUnread) stream.close();
    },
    end: () => stream.end(),
  });
  stream.start({
    data: (bytes, fds) => {
      session.receive(bytes, adoptFd ? adoptAll(fds, adoptFd) : closeAll(fds));
    },
    // A reset by the client ends its session like a close; nothing else is disturbed.
    closed: () => {
      streams.delete(stream);
      session.end();
    },
  });
}

/**
 * The received fds as the VM's host's; one that cannot be adopted was closed by `adoptFd`, and
 * stays in its place as refused, with why, for the command that wanted it to report.
 */
function adoptAll(fds: readonly number[], adoptFd: (fd: number) => number): ReceivedFd[] {
  return fds.map((fd) => {
    try {
      return adoptFd(fd);
    } catch (e) {
      return { refused: fd, why: e instanceof Error ? e.message : String(e) };
    }
  });
}

function closeAll(fds: readonly number[]): number[] {
  closeReceivedFds(fds);
  return [];
}
