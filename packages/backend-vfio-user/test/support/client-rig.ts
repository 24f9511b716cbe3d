// A vfio-user client (proxy, device, backend, container) against @vmmkit/vfio-user-server serving
// a sim model over an in-process pair, with guest RAM in memfds on one SimHost.

import { AddressSpace, GuestMemory, VfioAddressSpace, VmmEventBus, type MemorySection } from '@vmmkit/core';
import { InProcessTransport, type VfioUserTransport } from '@vmmkit/core/vfio-user';
import { SimHost, createModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { VfioUserDevice, VfioUserIommuBackend, VfioUserProxy, type VfioUserProxyOptions } from '@vmmkit/backend-vfio-user';

export interface ClientRig {
  readonly host: SimHost;
  readonly server: VfioUserServer;
  readonly memory: GuestMemory;
  readonly space: VfioAddressSpace;
  readonly proxy: VfioUserProxy;
  readonly device: VfioUserDevice;
  readonly backend: VfioUserIommuBackend;
  /** The server's end of the pair (a test may close it, or stop answering through it). */
  readonly serverEnd: VfioUserTransport;
  close(): Promise<void>;
}

export interface ClientRigOptions {
  readonly host?: SimHost;
  readonly model?: string;
  /** The device's name (default 'vu0'). */
  readonly name?: string;
  /** VFIO_MIGRATION_* flags the server offers (default: the model's; 0 serves no migration). */
  readonly migrationFlags?: number;
  /** Guest RAM backing; 'memfd' by default. */
  readonly backing?: 'anonymous' | 'memfd';
  readonly proxy?: Partial<VfioUserProxyOptions>;
  /** Put the server's end of the pair between the server and the client (to stall or break it). */
  readonly wrapServerEnd?: (end: VfioUserTransport) => VfioUserTransport;
}

/** 1 MiB of guest RAM at GPA 0 and a connected (not yet attached) vfio-user device. */
export async function makeClientRig(options: ClientRigOptions = {}): Promise<ClientRig> {
  const host = options.host ?? new SimHost();
  const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: 0x10_0000n, name: 'ram' }], { backing: options.backing ?? 'memfd' });
  const as = new AddressSpace('system');
  const section: MemorySection = { kind: 'ram', start: 0n, size: 0x10_0000n, block: memory.blocks[0]!, offset: 0n, readonly: false };
  await as.addSection(section);
  const space = new VfioAddressSpace(as, memory);
  const server = new VfioUserServer({
    model: createModel({ model: options.model ?? 'edu', bdf: '0000:00:04.0' }), host, tickMs: 0,
    ...(options.migrationFlags !== undefined ? { migrationFlags: options.migrationFlags } : {}),
  });
  const name = options.name ?? 'vu0';
  const [clientEnd, serverEnd] = InProcessTransport.pair(host);
  server.serve(options.wrapServerEnd ? options.wrapServerEnd(serverEnd) : serverEnd);
  const proxy = new VfioUserProxy({ device: name, transport: clientEnd, host, timeoutMs: 200, ...options.proxy });
  const device = new VfioUserDevice(name, proxy, host);
  const backend = new VfioUserIommuBackend(host, new VmmEventBus());
  return {
    host, server, memory, space, proxy, device, backend, serverEnd,
    async close() {
      await backend.detachDevice(device).catch(() => undefined);
      proxy.close();
      await server.close();
      memory.free();
    },
  };
}
