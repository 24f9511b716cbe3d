// Serving QMP on a Unix socket (QEMU's `-qmp unix:PATH,server=on,wait=off`): every connection is a
// session. The connection is core's byte stream with SCM_RIGHTS, so clients pass descriptors as
// libvirt does (getfd, add-fd). A client that stops reading is dropped once its unsent output
// passes a bound, so that it cannot make the VMM buffer without end.

import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { ConfigError, HostError } from '@vmmkit/core';
import { closeReceivedFds, UnixStreamListener, type UnixStream } from '@vmmkit/core/vfio-user';
import type { QmpPeer, QmpSession } from './protocol/qmp-session.js';

/** The most output a client may leave unread before it is dropped, unless told otherwise. */
export const MAX_UNREAD_BYTES = 16 << 20;

/** How a QMP socket serves its clients. */
export interface QmpSocketOptions {
  /** Drop a client once this much of its output is unread (default {@link MAX_UNREAD_BYTES}). */
  readonly maxUnreadBytes?: number;
  /**
   * Whether descriptors clients pass reach the commands. They are this process's, so only a VM
   * whose host is this process's kernel can use them; for a simulated host they are closed on
   * arrival and getfd / add-fd find none. Default: whether the VM's host is a LinuxHost.
   */
  readonly passFds?: boolean;
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
  const passFds = options.passFds ?? true;
  let listener: UnixStreamListener;
  try {
    listener = UnixStreamListener.listen(path, (stream) => serve(stream, connect, maxUnread, passFds));
  } catch (e) {
    const why = e instanceof HostError ? `${e.syscall}: ${e.errno}` : e instanceof Error ? e.message : String(e);
    throw new ConfigError(`QMP socket ${path}: cannot listen (${why})`, 'qmp', path, { cause: e });
  }
  return {
    path,
    close: () => {
      listener.close();
      return Promise.resolve();
    },
  };
}

function serve(stream: UnixStream, connect: (peer: QmpPeer) => QmpSession, maxUnread: number, passFds: boolean): void {
  const session = connect({
    write: (text) => {
      stream.send(Buffer.from(text));
      if (stream.queuedBytes > maxUnread) stream.close();
    },
    end: () => stream.end(),
  });
  stream.start({
    data: (bytes, fds) => {
      if (!passFds) closeReceivedFds(fds.splice(0));
      session.receive(bytes, fds);
    },
    // A reset by the client ends its session like a close; nothing else is disturbed.
    closed: () => session.end(),
  });
}
