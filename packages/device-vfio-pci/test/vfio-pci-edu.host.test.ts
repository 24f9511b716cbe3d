// An edu device assigned through vfio-pci on either backend, driven as a guest driver would: on
// SimHost, and on LinuxHost where QEMU edu devices are bound to vfio-pci (the kernel tier's
// guest, VMMKIT_TEST_EDU_DEVICES) — the same program against the model and the real kernel.

import { PCI_COMMAND } from '@vmmkit/core/uapi';
import { describe, expect, it } from 'vitest';
import { LinuxHost, Vmm, VfioError, type HostKernel } from '@vmmkit/core';
import { realEduDevices } from '@vmmkit/core/testing';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { SimHost } from '@vmmkit/sim';
import { vfioPciPlugin, type VfioPciDevice } from '../src/index.js';
import { described, EDU, findCap, MACHINE, nextInterrupt, tick } from './helpers.js';

const EDU_ID = 0x00;
const EDU_LIVENESS = 0x04;
const EDU_IRQ_STATUS = 0x24;
const EDU_IRQ_RAISE = 0x60;
const EDU_IRQ_ACK = 0x64;
const [SRC, DST, CNT, CMD] = [0x80, 0x88, 0x90, 0x98];

/** Copy `count` bytes by edu's DMA engine: to the device (into its buffer) or from it. QEMU's edu takes a while. */
async function eduDma(d: VfioPciDevice, src: bigint, dst: bigint, count: number, toRam: boolean): Promise<void> {
  await d.barWrite(0, SRC, 4, src);
  await d.barWrite(0, DST, 4, dst);
  await d.barWrite(0, CNT, 4, BigInt(count));
  await d.barWrite(0, CMD, 4, toRam ? 3n : 1n);
  for (let i = 0; i < 1000 && (await d.barRead(0, CMD, 4)) & 1n; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect((await d.barRead(0, CMD, 4)) & 1n).toBe(0n);
}

interface Target {
  readonly name: 'SimHost' | 'LinuxHost';
  readonly unavailable?: string;
  host(): HostKernel;
  readonly edu: string;
}

const real = { legacy: realEduDevices('/dev/vfio/vfio'), iommufd: realEduDevices('/dev/iommu') };
const targets = (backend: 'legacy' | 'iommufd'): Target[] => [
  { name: 'SimHost', host: () => new SimHost(MACHINE), edu: EDU },
  {
    name: 'LinuxHost', unavailable: real[backend].unavailable, host: () => new LinuxHost(),
    edu: real[backend].devices[0]?.split('/').pop() ?? EDU,
  },
];

describe.for(['legacy', 'iommufd'] as const)('vfio-pci edu on the %s backend', (backend) => {
  describe.each(targets(backend))('on $name', (target) => {
    it.skipIf(target.unavailable !== undefined)(`realizes, reads its ID, DMAs through guest memory, interrupts, resets and unrealizes, leaving nothing${target.unavailable ? ` (skipped: ${target.unavailable})` : ''}`, async () => {
      const host = target.host();
      const sim = host instanceof SimHost ? host : undefined;
      const before = sim?.census();
      const vmm = await Vmm.create({ host, plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 16n << 20n }] });
      if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
      const d = (await vmm.addDevice(described(target.edu, backend))) as VfioPciDevice;
      expect(d.vfio.container?.backend.kind).toBe(`vfio-iommu-${backend}`);
      expect(Number(await d.barRead(0, EDU_ID, 4))).toBe(0x010000ed);
      await d.barWrite(0, EDU_LIVENESS, 4, 0x12345678n);
      expect(Number(await d.barRead(0, EDU_LIVENESS, 4))).toBe(0xedcba987);

      // A guest driver turns on memory decoding and bus mastering (vfio-pci cleared it on open).
      await d.configWrite(PCI_COMMAND, 2, (await d.configRead(PCI_COMMAND, 2)) | 0x6);
      const data = Uint8Array.from({ length: 2048 }, (_, i) => (i * 13) & 0xff);
      vmm.memory.write(0x10_0000n, data);
      await eduDma(d, 0x10_0000n, 0x40000n, 2048, false);
      await eduDma(d, 0x40000n, 0x20_0000n, 2048, true);
      expect(vmm.memory.read(0x20_0000n, 2048)).toEqual(data);

      // INTx is live from realize (edu has a pin); the guest then switches to MSI.
      expect(d.interruptMode).toBe('intx');
      let irq = nextInterrupt(d);
      await d.barWrite(0, EDU_IRQ_RAISE, 4, 1n);
      expect(await irq).toMatchObject({ mode: 'intx', vector: 0 });
      await d.barWrite(0, EDU_IRQ_ACK, 4, 1n);
      await d.eoi();
      const msi = d.vfio.info && (await enableMsi(d));
      expect(msi).toBe('msi');
      irq = nextInterrupt(d);
      await d.barWrite(0, EDU_IRQ_RAISE, 4, 0x100n);
      expect(await irq).toEqual({ mode: 'msi', vector: 0, count: 1n, message: { address: 0xfee0_0000n, data: 0x4041 } });
      expect(Number(await d.barRead(0, EDU_IRQ_STATUS, 4))).toBe(0x100); // the INTx cause was acknowledged

      // A reset where the host offers one (an edu on a QEMU root bus may have none): either way the
      // device is usable afterwards, with memory decoding off as after any reset attempt.
      const reset = await d.reset().then(() => undefined, (e: unknown) => e);
      if (d.vfio.resetWorks || reset === undefined) {
        expect(reset).toBeUndefined();
        expect(d.interruptMode).toBe('intx');
        expect((await d.configRead(PCI_COMMAND, 2)) & 0x6).toBe(0);
        await expect(d.barRead(0, EDU_IRQ_STATUS, 4)).rejects.toThrow(/EIO/); // no memory decoding after a reset
        await d.configWrite(PCI_COMMAND, 2, (await d.configRead(PCI_COMMAND, 2)) | 0x2);
        expect(Number(await d.barRead(0, EDU_IRQ_STATUS, 4))).toBe(0);
      } else {
        expect(reset).toBeInstanceOf(VfioError);
        expect(String(reset)).toContain(d.name);
      }
      await d.configWrite(PCI_COMMAND, 2, (await d.configRead(PCI_COMMAND, 2)) | 0x6);
      await eduDma(d, 0x40000n, 0x30_0000n, 2048, true);
      expect(Number(await d.barRead(0, EDU_ID, 4))).toBe(0x010000ed);

      await vmm.close();
      await tick();
      if (sim) expect(sim.census()).toEqual(before);
    });
  });
});

/** Program and enable MSI through the emulated capability, as a guest driver would. */
async function enableMsi(d: VfioPciDevice): Promise<string | undefined> {
  const cap = await findCap(d, 0x05);
  expect(cap).toBeGreaterThan(0);
  const flags = await d.configRead(cap + 2, 2);
  const is64 = (flags & 0x80) !== 0;
  await d.configWrite(cap + 4, 4, 0xfee0_0000);
  if (is64) await d.configWrite(cap + 8, 4, 0);
  await d.configWrite(cap + (is64 ? 0x0c : 0x08), 2, 0x4041);
  await d.configWrite(cap + 2, 2, flags | 1);
  expect((await d.configRead(cap + 2, 2)) & 1).toBe(1);
  return d.interruptMode;
}
