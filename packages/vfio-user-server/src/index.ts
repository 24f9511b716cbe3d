// @vmmkit/vfio-user-server: serve a PCI device model to vfio-user clients (QEMU's vfio-user-pci,
// vmmkit's own client) over a Unix socket or any VfioUserTransport.

export { VfioUserServer, type VfioUserServerOptions } from './vfio-user-server.js';
export { VfioUserConnection } from './connection.js';
export { VfioUserRequestError } from './request-error.js';
export { serveSocket, type SocketServer } from './serve-socket.js';
