// The contract every VfioIommuBackend must keep, as a vitest suite a backend (ours, or a user's
// plugin) runs against its own harness. Differences between backends are the declared
// capabilities; nothing here looks at a backend's name.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../host/posix.js';
import { VfioError } from '../errors/vmm-error.js';
import { DirtyBitmap } from '../memory/dirty-bitmap.js';
import type { VfioContainerBase } from '../vfio/vfio-container-base.js';
import type { VfioDevice } from '../vfio/vfio-device.js';
import type { VfioIommuContractCapabilities, VfioIommuContractHarness } from './contract-harness.js';

/** IOVAs for extra mappings: above guest RAM, inside every IOMMU's window and below edu's 28-bit mask. */
const EXTRA_IOVA = 0x0800_0000n;
/** Where extra mappings take their memory from guest RAM on backends that map nothing else (2 MiB in: no test's DMA goes there). */
const SPARE_GPA = 0x20_0000n;

/** Memory for an extra mapping: the host address to map, its bytes, and how to give it back. */
interface ExtraMemory {
  readonly addr: bigint;
  readonly bytes: Uint8Array;
  release(): void;
}

/** Expect `op` to reject with a VfioError whose errno is `errno`. */
export async function expectVfioErrno(errno: string, op: Promise<unknown>): Promise<VfioError> {
  const e = await op.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected a VfioError with errno ${errno}`).toBeInstanceOf(VfioError);
  expect((e as VfioError).errno).toBe(errno);
  return e as VfioError;
}

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

/**
 * Define the contract tests for a backend.
 * @param name shown in the test names, e.g. `legacy type1 on /dev/vfio/vfio`.
 * @param caps what the backend does where backends legitimately differ.
 * @param make a fresh harness per test.
 * @param unavailable why this host cannot run the suite, if it cannot.
 */
export function describeVfioIommuContract(
  name: string,
  caps: VfioIommuContractCapabilities,
  make: () => Promise<VfioIommuContractHarness>,
  /** Why this host cannot run the suite (it is then reported as skipped, with the reason). */
  unavailable?: string,
): void {
  const title = `VfioIommuBackend contract: ${name}${unavailable ? ` (skipped: ${unavailable})` : ''}`;
  describe.skipIf(unavailable !== undefined)(title, () => {
    let h: VfioIommuContractHarness;
    let baseline: unknown;
    /** The host's page size. */
    let PAGE = 4096n;
    const attached: VfioDevice[] = [];

    const attach = async (index = 0): Promise<{ device: VfioDevice; container: VfioContainerBase }> => {
      const device = h.device(index);
      const container = await h.backend.attachDevice(device.name, device, h.space);
      attached.push(device);
      return { device, container };
    };
    /**
     * `size` bytes for an extra mapping, zeroed: fresh process memory where the backend maps any,
     * else spare guest RAM (caps.processMemory false).
     */
    const extraMemory = (size: number): ExtraMemory => {
      if (caps.processMemory ?? true) {
        const m = h.host.mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
        return { addr: m.addr, bytes: m.bytes, release: () => m.unmap() };
      }
      const ram = h.memory.blocks[0]!;
      const bytes = ram.mapping.view(Number(SPARE_GPA - ram.gpa), size);
      bytes.fill(0);
      return { addr: ram.hva + (SPARE_GPA - ram.gpa), bytes, release: () => bytes.fill(0) };
    };
    const detach = async (device: VfioDevice): Promise<void> => {
      attached.splice(attached.indexOf(device), 1);
      await h.backend.detachDevice(device);
    };

    beforeEach(async () => {
      h = await make();
      PAGE = BigInt(h.host.pageSize);
      baseline = h.census?.();
    });

    afterEach(async () => {
      for (const d of attached.splice(0).reverse()) await h.backend.detachDevice(d);
      try {
        if (h.census) expect(h.census(), 'everything attached was released').toEqual(baseline);
      } finally {
        await h.dispose();
      }
    });

    it('attaches a device into a new container that maps guest RAM, and releases it all on detach', async () => {
      const { device, container } = await attach();
      if (caps.deviceFd ?? true) expect(device.fd).toBeGreaterThanOrEqual(0);
      expect(device.container).toBe(container);
      expect(container.devices).toContain(device);
      expect(h.space.containers).toEqual([container]);
      expect(container.listening).toBe(true);
      expect(device.info?.numRegions).toBeGreaterThan(0);
      const data = bytes(256, 1);
      await h.dma(device, 0x3000n, data);
      expect(h.memory.read(0x3000n, 256)).toEqual(data);
      if (!device.mdev) {
        expect(device.hostIommuDevice?.realized).toBe(true);
        expect(device.hostIommuDevice!.awBits).toBeGreaterThanOrEqual(32);
        expect(device.hostIommuDevice!.awBits).toBeLessThanOrEqual(64);
        if (!caps.hwCaps) expect(device.hostIommuDevice!.hwCaps).toBe(0n);
      }
      await detach(device);
      expect(device.fd).toBe(-1);
      expect(device.container).toBeUndefined();
      expect(h.space.containers).toEqual([]);
    });

    it.runIf(caps.multipleDevices)('shares a container between devices where it can, and frees it with the last device', async () => {
      const a = await attach(0);
      const b = await attach(1);
      expect(b.container === a.container).toBe(caps.sharedContainer);
      await detach(a.device);
      await h.dma(b.device, 0x5000n, bytes(64, 2));
      expect(h.memory.read(0x5000n, 64)).toEqual(bytes(64, 2));
      await detach(b.device);
      expect(h.space.containers).toEqual([]);
    });

    it('maps extra memory, refuses an overlap with EEXIST, and unmaps it', async () => {
      const { device, container } = await attach();
      const extra = extraMemory(0x10000);
      try {
        await container.dmaMap(EXTRA_IOVA, 0x10000n, extra.addr, false);
        await h.dma(device, EXTRA_IOVA + 0x100n, bytes(32, 3));
        expect(extra.bytes.subarray(0x100, 0x120)).toEqual(bytes(32, 3));
        await expectVfioErrno('EEXIST', container.dmaMap(EXTRA_IOVA + PAGE, PAGE, extra.addr, false));
        await container.dmaUnmap(EXTRA_IOVA, 0x10000n);
        await h.dma(device, EXTRA_IOVA, bytes(8, 4));
        expect(extra.bytes.subarray(0, 8), 'a DMA to an unmapped IOVA reaches nothing').toEqual(new Uint8Array(8));
        await container.dmaUnmap(EXTRA_IOVA, 0x10000n); // nothing left: not an error
      } finally {
        extra.release();
      }
    });

    it.runIf(!(caps.processMemory ?? true))('refuses to map memory that is not guest RAM with EFAULT', async () => {
      const { container } = await attach();
      const other = h.host.mmap(h.host.pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
      try {
        await expectVfioErrno('EFAULT', container.dmaMap(EXTRA_IOVA, PAGE, other.addr, false));
      } finally {
        other.unmap();
      }
    });

    it('keeps read-only mappings read-only for the device', async () => {
      const { device, container } = await attach();
      const extra = extraMemory(2 * h.host.pageSize);
      try {
        await container.dmaMap(EXTRA_IOVA, 2n * PAGE, extra.addr, true);
        await h.dma(device, EXTRA_IOVA, bytes(8, 5));
        expect(extra.bytes.subarray(0, 8).every((b) => b === 0)).toBe(true);
        await container.dmaUnmap(EXTRA_IOVA, 2n * PAGE);
      } finally {
        extra.release();
      }
    });

    it(`never removes part of a mapping (a partial unmap is ${caps.partialUnmap === 'EINVAL' ? 'refused with EINVAL' : 'ignored'})`, async () => {
      const { device, container } = await attach();
      const extra = extraMemory(2 * h.host.pageSize);
      try {
        await container.dmaMap(EXTRA_IOVA, 2n * PAGE, extra.addr, false);
        const partial = container.dmaUnmap(EXTRA_IOVA, PAGE);
        if (caps.partialUnmap === 'EINVAL') await expectVfioErrno('EINVAL', partial);
        else await partial;
        await h.dma(device, EXTRA_IOVA, bytes(8, 6));
        await h.dma(device, EXTRA_IOVA + PAGE, bytes(8, 7));
        expect(extra.bytes.subarray(h.host.pageSize, h.host.pageSize + 8)).toEqual(bytes(8, 7));
        await container.dmaUnmap(EXTRA_IOVA, 2n * PAGE);
      } finally {
        extra.release();
      }
    });

    it('unmaps everything with `all`', async () => {
      const { device, container } = await attach();
      await container.dmaUnmap(0n, 0n, { all: true });
      await h.dma(device, 0x3000n, bytes(8, 8));
      expect(h.memory.read(0x3000n, 8), 'nothing stays mapped').toEqual(new Uint8Array(8));
    });

    it.runIf(caps.iommuDirtyTracking)(`tracks dirty pages through the IOMMU (${caps.dirtyReports}, noClear ${caps.noClear ? 'keeps' : 'clears'})`, async () => {
      const { device, container } = await attach();
      expect(container.iommuDirtyTrackingSupported).toBe(true);
      const ram = h.memory.blocks[0]!;
      await container.dirtyTracking.start();
      expect(container.dirtyTracking.strategy).toBe('iommu');
      expect(container.dirtyTracking.state).toBe('running');
      await h.dma(device, 5n * PAGE + 16n, bytes(16, 9));
      const bitmap = new DirtyBitmap(ram.pages);
      const expected = caps.dirtyReports === 'exact' ? [5] : Array.from({ length: ram.pages }, (_, i) => i);
      await container.queryDirtyBitmap(bitmap, ram.gpa, ram.size, { noClear: true });
      bitmap.mergeIncoming();
      expect(setBits(bitmap)).toEqual(expected);
      bitmap.clear();
      await container.queryDirtyBitmap(bitmap, ram.gpa, ram.size);
      bitmap.mergeIncoming();
      expect(setBits(bitmap)).toEqual(caps.noClear || caps.dirtyReports === 'all-mapped' ? expected : []);
      await container.dirtyTracking.stop();
      expect(container.dirtyTracking.state).toBe('stopped');
    });

    it.runIf(caps.iommuDirtyTracking)('harvests the dirty pages of a range before unmapping it (the guest IOMMU unmap flow)', async () => {
      const { device, container } = await attach();
      const ram = h.memory.blocks[0]!;
      const gpa = 0x10_0000n;
      // Map IOVA -> guest RAM at gpa, as a guest IOMMU mapping would.
      await container.dmaMap(EXTRA_IOVA, 4n * PAGE, ram.hva + gpa, false);
      h.memory.startDirtyLog();
      await container.dirtyTracking.start();
      await h.dma(device, EXTRA_IOVA + 2n * PAGE, bytes(8, 10));
      await container.dmaUnmap(EXTRA_IOVA, 4n * PAGE, { dirty: { gpa, memory: h.memory } });
      const logged = setBits(ram.dirty!).filter((p) => p >= 256 && p < 260);
      expect(logged).toEqual(caps.dirtyReports === 'exact' ? [258] : [256, 257, 258, 259]);
      await h.dma(device, EXTRA_IOVA, bytes(8, 11));
      expect(h.memory.read(gpa, 8), 'the unmapped IOVA reaches nothing').toEqual(new Uint8Array(8));
      await container.dirtyTracking.stop();
      h.memory.stopDirtyLog();
    });

    it('harvests nothing when dirty tracking is not running', async () => {
      const { container } = await attach();
      const ram = h.memory.blocks[0]!;
      await container.dmaMap(EXTRA_IOVA, PAGE, ram.hva, false);
      h.memory.startDirtyLog();
      await container.dmaUnmap(EXTRA_IOVA, PAGE, { dirty: { gpa: 0n, memory: h.memory } });
      expect(ram.dirty!.count()).toBe(0);
      h.memory.stopDirtyLog();
    });

    it.runIf(!caps.iommuDirtyTracking)('says so when asked for IOMMU dirty pages it cannot track', async () => {
      const { container } = await attach();
      expect(container.iommuDirtyTrackingSupported).toBe(false);
      expect(container.dirtyTracking.decide().strategy).not.toBe('iommu');
      await container.dirtyTracking.start();
      expect(container.dirtyTracking.strategy).not.toBe('iommu');
      await expect(container.queryDirtyBitmap(new DirtyBitmap(16), 0n, 16n * PAGE)).rejects.toThrow(/does not track dirty pages/);
      await container.dirtyTracking.stop();
    });

    it.runIf(caps.faultInjection)('fails each step of attach with a VfioError naming the device and errno, leaving nothing behind', async () => {
      expect(h.attachIoctls?.length, 'the harness names the ioctls of an attach').toBeGreaterThan(0);
      for (const step of h.attachIoctls!) {
        const before = h.census!();
        const device = h.device(0);
        h.injectFault!({ ioctl: step.ioctl, on: step.on, errno: 'EIO' });
        const e = await h.backend.attachDevice(device.name, device, h.space).then(() => undefined, (err: unknown) => err);
        expect(e, `a fault in ${step.name} must fail the attach`).toBeInstanceOf(VfioError);
        expect((e as VfioError).errno, step.name).toBe('EIO');
        expect((e as Error).message, step.name).toContain(device.name);
        expect(h.census!(), `after a fault in ${step.name}`).toEqual(before);
        expect(h.space.containers, `after a fault in ${step.name}`).toEqual([]);
        expect(device.fd).toBe(-1);
      }
      await attach(); // and a clean attach still works
    });

    it.runIf(caps.faultInjection)('releases everything when a step of detach fails, and says which', async () => {
      expect(h.detachIoctls?.length, 'the harness names the ioctls of a detach').toBeGreaterThan(0);
      for (const step of h.detachIoctls!) {
        const before = h.census!();
        const { device } = await attach();
        h.injectFault!({ ioctl: step.ioctl, on: step.on, errno: 'EIO' });
        const e = await detach(device).then(() => undefined, (err: unknown) => err);
        expect(e, `a fault in ${step.name} must be reported`).toBeInstanceOf(VfioError);
        expect((e as VfioError).errno, step.name).toBe('EIO');
        expect(device.fd, step.name).toBe(-1);
        expect(h.space.containers, `after a fault in ${step.name}`).toEqual([]);
        expect(h.census!(), `after a fault in ${step.name}`).toEqual(before);
      }
    });

    it.runIf(caps.faultInjection)('leaves mappings as they were when map or unmap fails', async () => {
      const { device, container } = await attach();
      const extra = extraMemory(2 * h.host.pageSize);
      try {
        h.injectFault!({ ioctl: h.mapIoctl!.ioctl, on: h.mapIoctl!.on, errno: 'ENOMEM' });
        await expectVfioErrno('ENOMEM', container.dmaMap(EXTRA_IOVA, 2n * PAGE, extra.addr, false));
        await h.dma(device, EXTRA_IOVA, bytes(8, 12));
        expect(extra.bytes.subarray(0, 8), 'the failed map mapped nothing').toEqual(new Uint8Array(8));
        await container.dmaMap(EXTRA_IOVA, 2n * PAGE, extra.addr, false);
        h.injectFault!({ ioctl: h.unmapIoctl!.ioctl, on: h.unmapIoctl!.on, errno: 'EIO' });
        await expectVfioErrno('EIO', container.dmaUnmap(EXTRA_IOVA, 2n * PAGE));
        await h.dma(device, EXTRA_IOVA, bytes(8, 13));
        expect(extra.bytes.subarray(0, 8)).toEqual(bytes(8, 13));
        await container.dmaUnmap(EXTRA_IOVA, 2n * PAGE);
      } finally {
        extra.release();
      }
    });

    it.runIf(caps.iommuDirtyTracking && caps.faultInjection)('reports a failed dirty query, and a failed stop keeps what it could not stop for the next stop', async () => {
      const { container } = await attach();
      const ram = h.memory.blocks[0]!;
      await container.dirtyTracking.start();
      h.injectFault!({ ioctl: h.queryDirtyIoctl!.ioctl, on: h.queryDirtyIoctl!.on, errno: 'EFAULT' });
      await expectVfioErrno('EFAULT', container.queryDirtyBitmap(new DirtyBitmap(ram.pages), ram.gpa, ram.size));
      h.injectFault!({ ioctl: h.dirtyTrackingIoctl!.ioctl, on: h.dirtyTrackingIoctl!.on, errno: 'EIO' });
      await expectVfioErrno('EIO', container.dirtyTracking.stop());
      expect(container.dirtyTracking.state, 'what failed to stop stays on record').toBe('stopping');
      await container.dirtyTracking.stop();
      expect(container.dirtyTracking.state).toBe('stopped');
    });

    it.runIf(caps.iommuDirtyTracking && caps.faultInjection)('keeps dirty tracking stopped when starting it fails', async () => {
      expect(h.dirtyTrackingIoctl, 'the harness names the ioctl that starts dirty tracking').toBeDefined();
      const { container } = await attach();
      h.injectFault!({ ioctl: h.dirtyTrackingIoctl!.ioctl, on: h.dirtyTrackingIoctl!.on, errno: 'EIO' });
      await expectVfioErrno('EIO', container.dirtyTracking.start());
      expect(container.dirtyTracking.state).toBe('stopped');
      await container.dirtyTracking.start();
      expect(container.dirtyTracking.state).toBe('running');
      await container.dirtyTracking.stop();
    });
  });
}

function setBits(bitmap: DirtyBitmap): number[] {
  const out: number[] = [];
  bitmap.forEachSetBit((b) => out.push(b));
  return out;
}
