// The message transport seam of vfio-user: whole messages with their fds, in order, both ways.
// A Unix socket carries them between processes; an in-process pair carries them in tests.

import type { VmmError } from '../errors/vmm-error-base.js';
import type { VfioUserMessage } from './message.js';

/** What a transport tells its owner. */
export interface VfioUserTransportHandlers {
  /**
   * A whole message arrived. The handler owns `message.fds` from now on: it closes every one
   * it does not keep, also when it throws (the transport cannot know which it kept).
   */
  message(message: VfioUserMessage): void;
  /**
   * The connection ended: `error` undefined when the peer closed cleanly or `close()` was
   * called, a VfioUserTransportError / VfioUserProtocolError otherwise. Called once; no message
   * follows it. Fds of a message that never completed are closed by the transport.
   */
  closed(error?: VmmError): void;
}

/**
 * One end of a vfio-user connection. Messages are whole (header included) and ordered. The
 * sender keeps its fds: the receiver gets duplicates, as SCM_RIGHTS gives them.
 */
export interface VfioUserTransport {
  /** The socket path, or a name for a pair, for errors. */
  readonly endpoint: string;
  /** Start delivering incoming messages to `handlers`; called once. */
  start(handlers: VfioUserTransportHandlers): void;
  /**
   * Queue a whole message (as `encodeMessage` builds it) with `fds`. Never blocks: what the
   * peer cannot take yet waits in a queue. Throws VfioUserTransportError when the connection was
   * closed before the call; a send that fails ends the connection (reported through `closed`).
   */
  send(message: Uint8Array, fds?: readonly number[]): void;
  /** Close the connection (idempotent): pending output is dropped, `closed()` is called. */
  close(): void;
  /** Whether the connection is still open. */
  readonly open: boolean;
}
