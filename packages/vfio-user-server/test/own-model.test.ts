// A model written from scratch the way docs/vfio-user.md shows: its config space from
// buildConfigSpace, a register, an interrupt and a DMA, served to a client.

import { expect, it } from 'vitest';
import { VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_MSI_IRQ_INDEX } from '@vmmkit/core/uapi';
import { InProcessTransport, VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs } from '@vmmkit/core/vfio-user';
import { SimHost, buildConfigSpace, type SimBar, type SimDeviceBus, type SimPciModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { TestClient } from './support/test-client.js';
import { enableBusMaster, guestRam, mapRam } from './support/rig.js';

class Counter implements SimPciModel {
  readonly kind = 'counter';
  readonly bars: readonly SimBar[] = [{ index: 0, size: 0x1000n, type: 'mem32' }];
  readonly config = buildConfigSpace({
    vendor: 0x1234, device: 0xc0de, revision: 1, classCode: 0xff0000, subsystemVendor: 0x1234, subsystemId: 1,
    command: 0, interruptPin: 1, bars: this.bars, barBase: () => 0xfe00_0000n, msi: { vectors: 1 },
  });
  readonly interrupts = { intx: true, msi: 1, msix: 0 };
  #bus: SimDeviceBus | undefined;
  #count = 0n;

  connect(bus: SimDeviceBus): void {
    this.#bus = bus;
  }

  barRead(_bar: number, offset: number): bigint {
    return offset === 0 ? this.#count : 0n;
  }

  barWrite(_bar: number, offset: number, _size: 1 | 2 | 4 | 8, value: bigint): void {
    if (offset === 0) this.#count += value;
    if (offset === 8) this.#bus!.raiseIrq({ kind: 'msi', vector: 0 });
    if (offset === 16) this.#bus!.dmaWrite(value, new TextEncoder().encode('hello'));
  }

  reset(): void {
    this.#count = 0n;
  }
}

it('serves a model written from scratch, as the documentation shows', async () => {
  const host = new SimHost();
  const server = new VfioUserServer({ model: new Counter(), host, tickMs: 0 });
  const [a, b] = InProcessTransport.pair(host);
  server.serve(b);
  const client = new TestClient(a, host);
  await client.version();
  expect(await client.read32(7, 0)).toBe(0xc0de_1234);
  await client.write32(0, 0, 5);
  await client.write32(0, 0, 7);
  expect(await client.read32(0, 0)).toBe(12);
  const msi = host.eventfd(0, 0o4000);
  await client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1 }), [msi]);
  await client.write32(0, 8, 1);
  const n = new Uint8Array(8);
  host.read(msi, n);
  expect(n[0]).toBe(1);
  const ram = guestRam(host, 0x1000);
  await mapRam(client, ram.fd, 0x10_0000n, 0x1000n);
  await enableBusMaster(client);
  await client.write64(0, 16, 0x10_0100n);
  expect(new TextDecoder().decode(ram.mapping.view(0x100, 5))).toBe('hello');
  ram.close();
  host.close(msi);
  client.close();
  await server.close();
});
