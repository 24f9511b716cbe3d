import { describe, expect, it } from 'vitest';
import {
  defineStruct, flex, s32, u8, u16, u32, u64, array, union,
  iommu_hw_info, iommu_ioas_map, vfio_bitmap, vfio_device_feature, vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info_cap_iova_range, vfio_irq_set, vfio_pci_dependent_device,
  vfio_pci_hot_reset, vfio_device_feature_mig_state, vfio_iova_range,
} from '../src/uapi/index.js';
import { ArgumentError } from '../src/errors/vmm-error-base.js';

describe('struct codec', () => {
  it('encodes u64 members as bigint, little-endian, and fills the size member', () => {
    const bytes = iommu_ioas_map.encode({ flags: 7, ioas_id: 3, user_va: 0x7f00_0000_1000n, length: 1n << 40n, iova: 0x1000n });
    expect(bytes.byteLength).toBe(40);
    const dv = new DataView(bytes.buffer);
    expect(dv.getUint32(0, true)).toBe(40);
    expect(dv.getBigUint64(16, true)).toBe(0x7f00_0000_1000n);
    expect(dv.getBigUint64(24, true)).toBe(1n << 40n);
    expect(iommu_ioas_map.decode(bytes)).toEqual({
      size: 40, flags: 7, ioas_id: 3, __reserved: 0, user_va: 0x7f00_0000_1000n, length: 1n << 40n, iova: 0x1000n,
    });
  });

  it('keeps an explicit size or argsz instead of filling it', () => {
    expect(iommu_ioas_map.decode(iommu_ioas_map.encode({ size: 16 })).size).toBe(16);
  });

  it('round-trips the full u64 range', () => {
    const max = 0xffff_ffff_ffff_ffffn;
    const bytes = vfio_bitmap.encode({ pgsize: 4096n, size: max, data: 1n });
    expect(vfio_bitmap.decode(bytes)).toEqual({ pgsize: 4096n, size: max, data: 1n });
  });

  it('appends flexible array elements and counts them in argsz', () => {
    const bytes = vfio_irq_set.encode({ flags: 0x24, index: 2, start: 0, count: 2, data: new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]) });
    expect(bytes.byteLength).toBe(28);
    expect(vfio_irq_set.get(bytes, 'argsz')).toBe(28);
    expect(vfio_irq_set.readFlex(bytes, 8)).toEqual([1, 0, 0, 0, 2, 0, 0, 0]);

    const reset = vfio_pci_hot_reset.encode({ count: 3, group_fds: [5, -1, 7] });
    expect(reset.byteLength).toBe(24);
    expect(vfio_pci_hot_reset.readFlex(reset, 3)).toEqual([5, -1, 7]);
  });

  it('lays out flexible arrays of structs at their alignment', () => {
    const ranges = [{ start: 0n, end: 0xfedfffffn }, { start: 0xfef00000n, end: 0x7fffffffffn }];
    const bytes = vfio_iommu_type1_info_cap_iova_range.encode({ header: { id: 1, version: 1 }, nr_iovas: 2, iova_ranges: ranges });
    expect(bytes.byteLength).toBe(16 + 2 * vfio_iova_range.size);
    expect(vfio_iommu_type1_info_cap_iova_range.decode(bytes).header).toEqual({ id: 1, version: 1, next: 0 });
    expect(vfio_iommu_type1_info_cap_iova_range.readFlex(bytes, 2)).toEqual(ranges);
  });

  it('encodes nested structs from partial values', () => {
    const bytes = vfio_iommu_type1_dirty_bitmap_get.encode({ iova: 0x1000n, size: 0x2000n, bitmap: { pgsize: 4096n, data: 0xabcn } });
    expect(vfio_iommu_type1_dirty_bitmap_get.decode(bytes)).toEqual({
      iova: 0x1000n, size: 0x2000n, bitmap: { pgsize: 4096n, size: 0n, data: 0xabcn },
    });
  });

  it('carries a payload struct inside a feature or unmap request', () => {
    const payload = vfio_device_feature_mig_state.encode({ device_state: 3, data_fd: -1 });
    const req = vfio_device_feature.encode({ flags: 0x20002, data: payload });
    expect(vfio_device_feature.get(req, 'argsz')).toBe(16);
    expect(vfio_device_feature_mig_state.decode(req, vfio_device_feature.size)).toEqual({ device_state: 3, data_fd: -1 });

    const unmap = vfio_iommu_type1_dma_unmap.encode({ flags: 1, data: vfio_bitmap.encode({ pgsize: 4096n }) });
    expect(vfio_iommu_type1_dma_unmap.get(unmap, 'argsz')).toBe(48);
  });

  it('places union members at one offset', () => {
    const bytes = vfio_pci_dependent_device.encode({ devid: 0xffffffff, segment: 1, bus: 2, devfn: 0x18 });
    expect(vfio_pci_dependent_device.decode(bytes)).toEqual({ group_id: 0xffffffff, devid: 0xffffffff, segment: 1, bus: 2, devfn: 0x18 });
  });

  it('follows C alignment and tail padding', () => {
    const s = defineStruct('t', { a: u8, b: u64, c: u16, ...union({ d: u8, e: u32 }), f: u8 });
    expect(s.members.b.offset).toBe(8);
    expect(s.members.c.offset).toBe(16);
    expect(s.members.d.offset).toBe(20);
    expect(s.members.e.offset).toBe(20);
    expect(s.members.f.offset).toBe(24);
    expect(s.size).toBe(32);
    expect(s.align).toBe(8);
  });

  it('reads and writes fixed arrays and single members in place', () => {
    const bytes = iommu_hw_info.encode({ __reserved: [1, 2, 3], out_max_pasid_log2: 20 });
    expect(iommu_hw_info.get(bytes, '__reserved')).toEqual([1, 2, 3]);
    iommu_hw_info.set(bytes, 'out_capabilities', 1n);
    expect(new DataView(bytes.buffer).getBigUint64(32, true)).toBe(1n);
    expect(iommu_hw_info.get(bytes, 'out_max_pasid_log2')).toBe(20);
  });

  it('decodes at an offset inside a larger buffer, and inside a subarray', () => {
    const big = new Uint8Array(64);
    big.set(vfio_bitmap.encode({ pgsize: 1n, size: 2n, data: 3n }), 8);
    expect(vfio_bitmap.decode(big, 8)).toEqual({ pgsize: 1n, size: 2n, data: 3n });
    expect(vfio_bitmap.decode(big.subarray(8))).toEqual({ pgsize: 1n, size: 2n, data: 3n });
  });

  it('refuses unknown members, short buffers, too many array elements and misplaced flexible arrays', () => {
    expect(() => vfio_bitmap.encode({ nope: 1 } as never)).toThrow(/struct vfio_bitmap has no member 'nope'/);
    expect(() => vfio_bitmap.decode(new Uint8Array(23))).toThrow(ArgumentError);
    expect(() => vfio_bitmap.get(new Uint8Array(8), 'size')).toThrow(/exceed a 8-byte buffer/);
    expect(() => defineStruct('x', { a: array(u8, 2) }).encode({ a: [1, 2, 3] })).toThrow(ArgumentError);
    expect(() => defineStruct('x', { a: flex(s32), b: u32 })).toThrow(/flexible array must be last/);
    expect(() => vfio_bitmap.readFlex(new Uint8Array(24), 1)).toThrow(/no flexible array member/);
  });
});
