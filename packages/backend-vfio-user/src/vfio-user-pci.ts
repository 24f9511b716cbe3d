// -device vfio-user-pci (QEMU's hw/vfio-user/pci.c, a subclass of vfio-pci): the same PCI device
// model as vfio-pci, realized over a device another process serves on a Unix socket. The device
// type connects, makes a VfioUserDevice (its I/O is messages) and attaches it through the
// vfio-iommu-user backend; everything after that is vfio-pci's.

import { ConfigError, LinuxHost, VfioError, type OptionSchema, type OptionsOf, type VmmDeviceType } from '@vmmkit/core';
import { SocketTransport } from '@vmmkit/core/vfio-user';
import { VFIO_PCI_MODEL_OPTIONS, VfioPciDevice, vfioPciOptions } from '@vmmkit/device-vfio-pci';
import { VFIO_IOMMU_USER } from './vfio-user-iommu-backend.js';
import { VfioUserDevice } from './vfio-user-device.js';
import { VfioUserProxy } from './vfio-user-proxy.js';

export const VFIO_USER_PCI = 'vfio-user-pci';

export const VFIO_USER_PCI_OPTIONS = {
  socket: { kind: 'string', doc: 'the server\'s Unix socket path (vmmkit\'s short form of socket.path= with socket.type=unix)' },
  'socket.path': { kind: 'string', doc: 'QEMU\'s SocketAddress: the Unix socket path (JSON: "socket":{"path":...,"type":"unix"})' },
  'socket.type': { kind: 'string', doc: 'QEMU\'s SocketAddress type: only unix' },
  'x-msg-timeout': { kind: 'uint', doc: 'milliseconds a message waits for its reply before the server counts as stalled (default 5000)' },
  'x-no-posted-writes': { kind: 'on-off', doc: 'QEMU\'s: wait for a reply to every BAR write instead of posting it (default off)' },
  ...VFIO_PCI_MODEL_OPTIONS,
} as const satisfies OptionSchema;

type VfioUserPciOptions = OptionsOf<typeof VFIO_USER_PCI_OPTIONS>;

const LABEL = `-device ${VFIO_USER_PCI}`;

/** The socket path of the options, in either form; ConfigError naming the option when it is missing or not a Unix socket. */
export function vfioUserSocketPath(options: VfioUserPciOptions): string {
  const short = options.socket;
  const path = options['socket.path'];
  const type = options['socket.type'];
  if (short !== undefined && (path !== undefined || type !== undefined)) {
    throw new ConfigError(`${LABEL}: give socket=PATH or socket.path= (JSON "socket":{"path":...}), not both`, 'socket', short);
  }
  if (type !== undefined && type !== 'unix') throw new ConfigError(`${LABEL}: unsupported socket type '${type}' (only unix)`, 'socket.type', type);
  const chosen = short ?? path;
  if (chosen === undefined || chosen === '') {
    throw new ConfigError(`${LABEL}: no socket given (socket=/path/to.sock, or JSON {"driver":"vfio-user-pci","socket":{"path":"/path/to.sock","type":"unix"}})`, 'socket');
  }
  if (path !== undefined && type === undefined) throw new ConfigError(`${LABEL}: socket.path= needs socket.type=unix`, 'socket.type');
  return chosen;
}

/**
 * The vfio-user-pci device type. The device is named `vfio-user:<socket path>`, as QEMU names
 * it, in every error. The connection is the device's: unrealize closes it after the detach.
 * Guest RAM with a file (GuestMemory backing 'memfd') is mapped by the server; RAM without one
 * (anonymous, the default) reaches the server only through DMA_READ/DMA_WRITE messages, which
 * works but costs a round trip per access, so realize warns about it.
 */
export const vfioUserPciType: VmmDeviceType<typeof VFIO_USER_PCI_OPTIONS> = {
  driver: VFIO_USER_PCI,
  options: VFIO_USER_PCI_OPTIONS,
  async realize(ctx) {
    const path = vfioUserSocketPath(ctx.options);
    // The connection passes real fds (eventfds, memfds) with SCM_RIGHTS: only this machine's kernel has them.
    if (!(ctx.host instanceof LinuxHost)) {
      throw new ConfigError(`${LABEL}: a vfio-user socket passes this machine's file descriptors; the VMM must run on LinuxHost`, 'socket', path);
    }
    const name = `vfio-user:${path}`;
    let transport: SocketTransport;
    try {
      transport = SocketTransport.connect(path);
    } catch (e) {
      throw new VfioError('connect to the vfio-user server', name, { cause: e });
    }
    const proxy = new VfioUserProxy({ device: name, transport, host: ctx.host, timeoutMs: ctx.options['x-msg-timeout'] });
    try {
      const anonymous = ctx.memory.blocks.filter((b) => b.fd === undefined).map((b) => b.name);
      if (anonymous.length > 0) {
        ctx.events.emit('vfio:warning', {
          device: name,
          message: `guest RAM ${anonymous.join(', ')} has no file (anonymous): the server reaches it only by DMA_READ/DMA_WRITE messages; back guest RAM with memfds to let it map the RAM`,
        });
      }
      return await VfioPciDevice.realize({
        id: ctx.id,
        host: ctx.host,
        events: ctx.events,
        vfio: ctx.vfio,
        as: ctx.pciBus.deviceAddressSpace(),
        backend: VFIO_IOMMU_USER,
        device: new VfioUserDevice(name, proxy, ctx.host, { postedWrites: !(ctx.options['x-no-posted-writes'] ?? false) }),
        driver: VFIO_USER_PCI,
        options: vfioPciOptions(ctx.options),
        release: () => proxy.close(),
      });
    } catch (e) {
      proxy.close();
      throw e;
    }
  },
};
