// @vmmkit/core/vfio-user: the vfio-user protocol (QEMU docs/interop/vfio-user.rst) for both a
// client and a server: constants, message codecs with hostile-input checks, and the transports.

export * from './constants.js';
export * from './vfio-user-errors.js';
export * from './message.js';
export * from './payload.js';
export * from './version.js';
export * from './dma.js';
export * from './device.js';
export * from './region-io-fds.js';
export * from './region-io.js';
export * from './feature.js';
export * from './framer.js';
export type * from './transport.js';
export * from './socket-transport.js';
export * from './in-process-transport.js';
export { UnixSocket, unlinkSocketPath, UNIX_SOCKET_MAX_FDS } from '../host/unix-socket.js';
export { UnixStream, UnixStreamListener, closeReceivedFds, type UnixStreamFailure, type UnixStreamHandlers } from '../host/unix-stream.js';
