// A server and a test client on an in-process pair over SimHost, with guest RAM in a memfd.

import { MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE, VFIO_PCI_CONFIG_REGION_INDEX } from '@vmmkit/core/uapi';
import { InProcessTransport, VFIO_USER_DMA_MAP, encodeDmaMap, type VfioUserTransport } from '@vmmkit/core/vfio-user';
import type { HostMapping } from '@vmmkit/core';
import { SimHost, createModel, type SimPciModel } from '@vmmkit/sim';
import { VfioUserServer, type VfioUserServerOptions } from '@vmmkit/vfio-user-server';
import { TestClient } from './test-client.js';

export interface Rig {
  readonly host: SimHost;
  readonly server: VfioUserServer;
  readonly client: TestClient;
  readonly model: SimPciModel;
  readonly log: string[];
}

/** A server for `model` ('edu', 'nic') and a connected client that has negotiated the version. */
export async function makeRig(model: string, options: Partial<VfioUserServerOptions> & { host?: SimHost } = {}): Promise<Rig> {
  const host = options.host ?? new SimHost();
  const log: string[] = [];
  const m = createModel({ model, bdf: '0000:00:04.0' });
  const server = new VfioUserServer({ tickMs: 0, ...options, model: m, host, log: (line) => log.push(line) });
  const [a, b] = InProcessTransport.pair(host);
  server.serve(b as VfioUserTransport);
  const client = new TestClient(a, host);
  await client.version();
  return { host, server, client, model: m, log };
}

/** Guest RAM: a memfd of `size` bytes the test maps too. */
export function guestRam(host: SimHost, size: number): { fd: number; mapping: HostMapping; close(): void } {
  const fd = host.memfdCreate('guest-ram', MFD_CLOEXEC);
  try {
    host.ftruncate(fd, BigInt(size));
    const mapping = host.mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
    return { fd, mapping, close: () => { mapping.unmap(); host.close(fd); } };
  } catch (e) {
    host.close(fd);
    throw e;
  }
}

/** Map `size` bytes of `ram` at IOVA `address` (read-write), sending the memfd. */
export async function mapRam(client: TestClient, fd: number, address: bigint, size: bigint, offset = 0n): Promise<void> {
  await client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset, address, size }), [fd]);
}

/** Turn on memory decoding and bus mastering through the command register. */
export async function enableBusMaster(client: TestClient): Promise<void> {
  const b = new Uint8Array([0x06, 0x00]);
  await client.write(VFIO_PCI_CONFIG_REGION_INDEX, 4, b);
}
