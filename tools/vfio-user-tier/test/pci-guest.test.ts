// The qtest PCI guest checked against QEMU's own account: on a q35 machine with devices that have
// I/O, 32-bit and 64-bit prefetchable BARs, every BAR the guest sizes through 0xcf8/0xcfc is the
// one query-pci lists, and where the guest places it is where QEMU maps it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preparedQemuVersion } from '../support/paths.js';
import { PCI_COMMAND_IO, PCI_COMMAND_MEMORY, scanBus0 } from '../support/pci-guest.js';
import { QemuPeer } from '../support/qemu-peer.js';
import { RunDir } from '../support/run-dir.js';

const version = preparedQemuVersion();
const reason = version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)';
if (reason) console.warn(`[vfio-user tier] PCI guest checks skipped: ${reason}`);

interface Region { bar: number; type: 'io' | 'memory'; size: number; address: number; mem_type_64?: boolean; prefetch?: boolean }
interface Dev { slot: number; function: number; id: { vendor: number; device: number }; regions: Region[] }

describe.skipIf(reason !== undefined)(`the qtest PCI guest (${version ?? reason})`, () => {
  let runDir: RunDir;
  let peer: QemuPeer;
  const queryPci = async (): Promise<Dev[]> =>
    (await peer.qmp.execute<{ devices: Dev[] }[]>('query-pci')).flatMap((b) => b.devices);

  beforeAll(async () => {
    runDir = RunDir.create();
    // virtio-net-pci: a legacy I/O BAR, the MSI-X BAR and a 64-bit prefetchable BAR; edu: 32-bit memory.
    peer = await QemuPeer.start({ runDir, devices: ['virtio-net-pci,addr=04.0', 'edu,addr=05.0'] });
  });

  afterAll(async () => {
    try {
      await peer?.stop();
    } finally {
      runDir?.remove();
    }
  });

  it('enumerates the same functions as query-pci', async () => {
    const scanned = (await scanBus0(peer.qtest)).map((f) => [f.fn.slot, f.fn.fn, f.vendor, f.device]);
    const listed = (await queryPci()).map((d) => [d.slot, d.function, d.id.vendor, d.id.device]);
    expect(scanned).toEqual(listed);
  });

  it('sizes every BAR as query-pci lists it, then places them where QEMU maps them', async () => {
    const devices = await queryPci();
    const kinds = new Set<string>();
    for (const { fn } of await scanBus0(peer.qtest)) {
      const found = devices.find((d) => d.slot === fn.slot && d.function === fn.fn)!;
      // query-pci lists an expansion ROM as "bar 6"; the guest sizes and places BARs 0-5 only.
      const listed = { ...found, regions: found.regions.filter((r) => r.bar < 6) };
      const sized = await fn.sizeBars();
      expect(sized.map((b) => ({ bar: b.index, size: Number(b.size), type: b.type === 'io' ? 'io' : 'memory' })), fn.bdf)
        .toEqual(listed.regions.map((r) => ({ bar: r.bar, size: r.size, type: r.type })));
      for (const b of sized) {
        const r = listed.regions.find((x) => x.bar === b.index)!;
        if (b.type !== 'io') expect([b.type === 'mem64', b.prefetchable], `${fn.bdf} BAR${b.index}`).toEqual([r.mem_type_64, r.prefetch]);
        kinds.add(b.type + (b.prefetchable ? '-prefetch' : ''));
      }
      if (fn.slot === 4 || fn.slot === 5) {
        const placed = await fn.assignBars();
        await fn.enable(PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
        const after = (await queryPci()).find((d) => d.slot === fn.slot && d.function === fn.fn)!;
        expect(after.regions.filter((r) => r.bar < 6).map((r) => r.address), fn.bdf).toEqual(placed.map((b) => Number(b.address)));
      }
    }
    expect([...kinds].sort()).toEqual(['io', 'mem32', 'mem64-prefetch']);
  });
});
