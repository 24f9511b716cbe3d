import { describe, expect, it } from 'vitest';
import { ConfigError, GuestIommu, type IommuMapping, type IommuNotifier } from '../src/index.js';

/** A notifier that records what it was told. */
class SimpleNotifierLog implements IommuNotifier {
  readonly calls: ['map' | 'unmap', IommuMapping][] = [];
  map(m: IommuMapping): void {
    this.calls.push(['map', m]);
  }
  unmap(m: IommuMapping): void {
    this.calls.push(['unmap', m]);
  }
}

const M = (iova: bigint, size: bigint, gpa: bigint): IommuMapping => ({ iova, size, gpa, readonly: false });

describe('GuestIommu', () => {
  it('reports its attributes: max IOVA from the address width, or no limit', () => {
    expect(new GuestIommu('v', { awBits: 39 }).attributes).toEqual({ dmaTranslation: true, maxIova: (1n << 39n) - 1n });
    expect(new GuestIommu('v').attributes).toEqual({ dmaTranslation: true, maxIova: undefined });
    expect(new GuestIommu('v', { dmaTranslation: false, awBits: 48 }).attributes.dmaTranslation).toBe(false);
    expect(() => new GuestIommu('v', { awBits: 7 })).toThrow(ConfigError);
  });

  it('maps, translates and unmaps, telling every notifier with the translation', async () => {
    const iommu = new GuestIommu('v', { awBits: 39 });
    const log = new SimpleNotifierLog();
    await iommu.map(0x10000n, 0x2000n, 0x400000n);
    await iommu.addNotifier(log); // replays the existing mapping
    await iommu.map(0x4000n, 0x1000n, 0x9000n, true);
    expect(iommu.mappings().map((m) => m.iova)).toEqual([0x4000n, 0x10000n]);
    expect(iommu.translate(0x10123n)).toBe(0x400123n);
    expect(iommu.translate(0x12000n)).toBeUndefined();
    await iommu.unmap(0n, 0x20000n);
    expect(iommu.mappings()).toEqual([]);
    expect(log.calls).toEqual([
      ['map', M(0x10000n, 0x2000n, 0x400000n)],
      ['map', { ...M(0x4000n, 0x1000n, 0x9000n), readonly: true }],
      ['unmap', { ...M(0x4000n, 0x1000n, 0x9000n), readonly: true }],
      ['unmap', M(0x10000n, 0x2000n, 0x400000n)],
    ]);
  });

  it('refuses unaligned, overlapping, out-of-width and straddling ranges without changing anything', async () => {
    const iommu = new GuestIommu('v', { awBits: 32 });
    await iommu.map(0x10000n, 0x2000n, 0n);
    await expect(iommu.map(0x11000n, 0x1000n, 0n)).rejects.toThrow('overlaps the mapping at 0x10000');
    await expect(iommu.map(0x100n, 0x1000n, 0n)).rejects.toThrow('not page aligned');
    await expect(iommu.map(0xffff_f000n, 0x2000n, 0n)).rejects.toThrow('beyond the address width (max 0xffffffff)');
    await expect(iommu.unmap(0x11000n, 0x1000n)).rejects.toThrow('straddles');
    expect(iommu.mappings()).toHaveLength(1);
  });

  it('undoes a map when a notifier fails, so every notifier agrees with the guest', async () => {
    const iommu = new GuestIommu('v');
    const good = new SimpleNotifierLog();
    await iommu.addNotifier(good);
    await iommu.addNotifier({ map: () => { throw new Error('no room'); }, unmap: () => {} });
    await expect(iommu.map(0n, 0x1000n, 0n)).rejects.toThrow('no room');
    expect(iommu.mappings()).toEqual([]);
    expect(good.calls.map((c) => c[0])).toEqual(['map', 'unmap']);
  });

  it('saves its mappings and loads them into another IOMMU, whose notifiers map them', async () => {
    const a = new GuestIommu('a', { awBits: 39 });
    await a.map(0x1000n, 0x1000n, 0x8000n, true);
    await a.map(0x40_0000n, 0x20_0000n, 0x100_0000n);
    const b = new GuestIommu('b', { awBits: 39 });
    const log = new SimpleNotifierLog();
    await b.addNotifier(log);
    await b.load(a.save());
    expect(b.mappings()).toEqual(a.mappings());
    expect(log.calls.map((c) => c[1].iova)).toEqual([0x1000n, 0x40_0000n]);
    await expect(b.load(a.save())).rejects.toThrow('cannot load a state over 2 mappings');
    await expect(new GuestIommu('c').load(new Uint8Array(31))).rejects.toThrow('not whole mappings');
  });
});
