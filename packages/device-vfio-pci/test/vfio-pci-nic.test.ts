// The nic through vfio-pci: MSI-X with an emulated table, a memory BAR mmapped in sparse areas,
// and what realize learns for migration.

import { describe, expect, it } from 'vitest';
import { VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY } from '@vmmkit/core/uapi';
import {
  NIC_CTRL, NIC_DOORBELL, NIC_IRQ_BATCH, NIC_IRQ_STATUS, NIC_MSIX_PBA, NIC_MSIX_TABLE, NIC_RATE_PPS, NIC_RX_RING_BASE, NIC_RX_RING_SIZE,
  SimHost,
} from '@vmmkit/sim';
import type { VfioPciDevice } from '../src/index.js';
import { described, EDU, findCap, MACHINE, NIC, nextInterrupt, tick, vmmOn } from './helpers.js';

describe.for(['legacy', 'iommufd'] as const)('vfio-pci nic on the %s backend', (backend) => {
  const realize = async () => {
    const host = new SimHost(MACHINE);
    const before = host.census();
    const vmm = await vmmOn(host);
    if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
    const d = (await vmm.addDevice(described(NIC, backend))) as VfioPciDevice;
    const done = async () => {
      await vmm.close();
      await tick();
      expect(host.census()).toEqual(before);
    };
    return { host, vmm, d, done };
  };

  it('delivers MSI-X through the emulated table: masked vectors wait as pending bits until unmasked', async () => {
    const { host, d, done } = await realize();
    await d.configWrite(0x04, 2, (await d.configRead(0x04, 2)) | 0x6);
    const msix = await findCap(d, 0x11);
    expect((await d.configRead(msix + 2, 2)) & 0x7ff).toBe(3); // four vectors
    // Program vector 0 (still masked), then enable MSI-X.
    await d.barWrite(0, NIC_MSIX_TABLE, 8, 0xfee0_1000n);
    await d.barWrite(0, NIC_MSIX_TABLE + 8, 4, 0x55n);
    await d.configWrite(msix + 2, 2, 0x8000);
    expect(d.interruptMode).toBe('msix');
    // Receive traffic into a ring in guest memory: 1000 packets/s, an interrupt per 4 packets.
    await d.barWrite(0, NIC_RX_RING_BASE, 4, 0x10_0000n);
    await d.barWrite(0, NIC_RX_RING_SIZE, 4, 64n);
    await d.barWrite(0, NIC_RATE_PPS, 4, 1000n);
    await d.barWrite(0, NIC_IRQ_BATCH, 4, 4n);
    await d.barWrite(0, NIC_CTRL, 4, 3n);
    const seen: number[] = [];
    d.on('interrupt', (e) => seen.push(e.vector));
    host.advance(10);
    await tick();
    expect(seen).toEqual([]); // vector 0 is masked
    expect((await d.barRead(0, NIC_MSIX_PBA, 8)) & 1n).toBe(1n);
    const irq = nextInterrupt(d);
    await d.barWrite(0, NIC_MSIX_TABLE + 12, 4, 0n); // unmask
    expect(await irq).toMatchObject({ mode: 'msix', vector: 0, message: { address: 0xfee0_1000n, data: 0x55 } });
    expect((await d.barRead(0, NIC_MSIX_PBA, 8)) & 1n).toBe(0n);
    expect(Number(await d.barRead(0, NIC_IRQ_STATUS, 4)) & 1).toBe(1);
    expect(await rxPackets(d)).toBeGreaterThan(0);
    await d.barWrite(0, NIC_CTRL, 4, 0n);
    await done();
  });

  it('mmaps the memory BAR where the kernel allows and reaches its register page by read/write', async () => {
    const { d, done } = await realize();
    await d.configWrite(0x04, 2, (await d.configRead(0x04, 2)) | 0x2);
    expect(d.bar(2).mmapped).toEqual([{ offset: 0, size: 0x4000 }, { offset: 0x5000, size: 0xb000 }]);
    expect(d.bar(0).mmapped).toEqual([]);
    await d.barWrite(2, 0x100, 8, 0x1122334455667788n);
    await d.barWrite(2, 0x5000, 4, 0xabcdn);
    expect((await d.barRead(2, 0x100, 8))).toBe(0x1122334455667788n);
    await d.barWrite(2, NIC_DOORBELL, 4, 1n);
    await d.barWrite(2, NIC_DOORBELL, 4, 1n);
    expect((await d.barRead(2, NIC_DOORBELL, 4))).toBe(2n);
    await expect(d.barRead(2, 0x10000, 4)).rejects.toThrow(/outside the BAR/);
    expect(() => d.bar(1)).toThrow(/no such BAR/);
    await done();
  });

  it('lends the mmapped parts of a BAR as barMemory (for memslots), without the parts that must trap, and keeps them its own', async () => {
    const { d, done } = await realize();
    const parts = d.barMemory(2);
    expect(parts.map((p) => [p.offset, p.size, p.mapping.length])).toEqual([[0n, 0x4000n, 0x4000], [0x5000n, 0xb000n, 0xb000]]);
    expect(d.barMemory(0)).toEqual([]); // registers and the MSI-X table: trapped
    expect(d.barMemory(1)).toEqual([]); // no such BAR
    // The same memory the BAR accessors reach.
    await d.barWrite(2, 0x5008, 4, 0x1234_5678n);
    expect(new DataView(parts[1]!.mapping.view(8, 4).slice().buffer).getUint32(0, true)).toBe(0x1234_5678);
    // A range that must trap takes out the whole area it overlaps.
    expect(d.bar(2).memory([{ offset: 0x3ffc, size: 8 }]).map((p) => p.offset)).toEqual([0x5000n]);
    // The borrower cannot unmap it; the device still reaches it.
    expect(() => parts[0]!.mapping.unmap()).toThrow(/is the device's/);
    await d.barWrite(2, 0x10, 4, 7n);
    expect(await d.barRead(2, 0x10, 4)).toBe(7n);
    await done();
  });

  it('learns what migration needs: the flags, device DMA logging, IOMMU dirty tracking', async () => {
    const { d, done } = await realize();
    expect(d.vfio.migrationFlags).toBe(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY);
    expect(d.vfio.dmaLoggingSupported).toBe(true);
    // Both backends track dirty pages here: type1 by DIRTY_PAGES, iommufd by its dirty HWPT.
    expect(d.vfio.iommuDirtyTracking).toBe(true);
    expect(d.vfio.deviceDirtyPageTracking).toBe('auto');
    await done();
  });
});

async function rxPackets(d: VfioPciDevice): Promise<number> {
  return Number(await d.barRead(0, 0x30, 4));
}

it('records the migration options', async () => {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  const d = (await vmm.addDevice(`vfio-pci,host=${NIC},enable-migration=on,x-device-dirty-page-tracking=off,x-pre-copy-dirty-page-tracking=off`)) as VfioPciDevice;
  expect(d.vfio.enableMigration).toBe('on');
  expect(d.vfio.deviceDirtyPageTracking).toBe('off');
  expect(d.vfio.preCopyDirtyPageTracking).toBe(false);
  await vmm.close();
});

it('fails realize with enable-migration=on for a device that cannot migrate, as QEMU does, and leaves nothing behind', async () => {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  const before = host.census();
  await expect(vmm.addDevice(`vfio-pci,host=${EDU},enable-migration=on`)).rejects.toThrow(
    `${EDU}: failed to enable migration: ${EDU}: VFIO migration is not supported in kernel`,
  );
  expect(host.census()).toEqual(before);
  // auto: the edu is realized; it only blocks migration.
  const d = (await vmm.addDevice(`vfio-pci,host=${EDU}`)) as VfioPciDevice;
  expect(d.vfio.migrationFlags).toBe(0);
  expect(d.vfio.dmaLoggingSupported).toBe(false);
  await vmm.close();
});

it('warns when enable-migration=on overrides the lack of dirty tracking', async () => {
  const host = new SimHost({ ...MACHINE, iommus: [{ id: 'iommu0', dirtyTracking: false, awBits: 39 }] });
  const vmm = await vmmOn(host);
  const warnings: string[] = [];
  vmm.events.on('vfio:warning', (w) => warnings.push(w.message));
  vmm.addObject('iommufd,id=iommufd0');
  await vmm.addDevice(`vfio-pci,host=${NIC},iommufd=iommufd0,enable-migration=on,x-device-dirty-page-tracking=off`);
  expect(warnings).toEqual([`${NIC}: VFIO device doesn't support device and IOMMU dirty tracking`]);
  await vmm.close();
});
