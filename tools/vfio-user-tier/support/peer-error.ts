// The one error the tier's test support throws: what a QEMU peer (its process, its qtest or QMP
// socket, or the device server beside it) did that the tier did not expect.

import { VmmError } from '@vmmkit/core';

/** A QEMU peer failed or answered unexpectedly; the message names the peer, the step and what it said. */
export class QemuPeerError extends VmmError {
  override readonly name = 'QemuPeerError';
  readonly code = 'QEMU_PEER';
}
