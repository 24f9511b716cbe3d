// @vmmkit/core: contracts and shared machinery of vmmkit.

export * from './di/token.js';
export * from './host/errno.js';
export * from './host/host-error.js';
export * from './host/host-kernel.js';
export * from './host/linux-host.js';
export * from './host/posix.js';
export * from './uapi/index.js';
export * from './memory/dirty-bitmap.js';
