// Every constant and struct layout of the kernel's uAPI facts is declared in core/src/uapi with the
// same value, size and member offsets, for each kernel series SimHost models: 6.12 (the facts of
// linux-libc-dev 6.12 plus the selftest header) and 7.2 (the headers of the kernel the tier builds,
// measured by tools/kernel-tier/uapi-facts.mjs).

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as uapi from '../src/uapi/index.js';
import { StructType } from '../src/uapi/struct.js';

interface AbiFacts {
  constants: Record<string, number>;
  structs: Record<string, { size: number; fields: Record<string, [offset: number, size: number]> }>;
}
const declared = uapi as unknown as Record<string, unknown>;

/** Each series: its facts, the layouts that differ from the plain (6.12) names, and how many facts it has. */
const SERIES = [
  { series: '6.12', overrides: {}, structs: 48, constants: 152 },
  { series: '7.2', overrides: uapi.LINUX_7_2_STRUCTS as Record<string, unknown>, structs: 48, constants: 168 },
].map((s) => ({
  ...s,
  facts: JSON.parse(readFileSync(new URL(`./fixtures/linux-uapi-${s.series}.json`, import.meta.url), 'utf8')) as AbiFacts,
}));

/** A declared struct's members as the facts list them: fixed members, then the flexible array at size 0. */
function layoutOf(struct: StructType<never>): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const [name, m] of Object.entries(struct.members as Record<string, { offset: number; size: number }>)) {
    out[name] = [m.offset, m.size];
  }
  if (struct.flexible) out[struct.flexible.name] = [struct.flexible.offset, 0];
  return out;
}

describe.each(SERIES)('Linux $series', ({ facts, overrides, structs, constants }) => {
  describe('uAPI constants match <linux/iommufd.h>, <linux/vfio.h> and iommufd_test.h', () => {
    it.for(Object.entries(facts.constants))('%s = %i', ([name, value]) => {
      const v = declared[name];
      expect(v, `${name} is not declared`).toBeDefined();
      // Sizes and addresses the sim computes with are declared as bigints.
      expect(typeof v === 'bigint' ? Number(v) : v).toBe(value);
    });
  });

  describe('uAPI struct layouts match the kernel', () => {
    it.for(Object.entries(facts.structs))('struct %s', ([name, fact]) => {
      const struct = overrides[name] ?? declared[name];
      expect(struct, `struct ${name} is not declared`).toBeInstanceOf(StructType);
      const s = struct as StructType<never>;
      expect(s.name).toBe(name);
      expect(s.size).toBe(fact.size);
      expect(layoutOf(s)).toEqual(fact.fields);
    });

    it('covers every struct the facts list (and the test sees them all)', () => {
      expect(Object.keys(facts.structs).length).toBe(structs);
      expect(Object.keys(facts.constants).length).toBe(constants);
    });
  });
});

describe('the series differ only where the 7.2 declarations say so', () => {
  const [v612, v72] = SERIES.map((s) => s.facts);
  it('every 6.12 constant has the same value in 7.2, but the mock device flag 7.2 dropped', () => {
    const changed = Object.keys(v612!.constants).filter((n) => v72!.constants[n] !== v612!.constants[n]);
    expect(changed).toEqual(['MOCK_FLAGS_DEVICE_HUGE_IOVA']);
  });

  it('the structs that grew in 7.2 are exactly those with a 7.2 layout declared', () => {
    const grown = Object.keys(v612!.structs).filter((n) => JSON.stringify(v72!.structs[n]) !== JSON.stringify(v612!.structs[n]));
    expect(grown.sort()).toEqual(Object.keys(uapi.LINUX_7_2_STRUCTS).sort());
  });
});

describe('ioctl names', () => {
  it('resolves VFIO numbers by fd kind, since container and device ioctls share numbers', () => {
    expect(uapi.VFIO_IOMMU_GET_INFO).toBe(uapi.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO);
    expect(uapi.ioctlName(uapi.VFIO_IOMMU_GET_INFO, 'vfio-container')).toBe('VFIO_IOMMU_GET_INFO');
    expect(uapi.ioctlName(uapi.VFIO_IOMMU_GET_INFO, 'vfio-device')).toBe('VFIO_DEVICE_GET_PCI_HOT_RESET_INFO');
    expect(uapi.ioctlName(uapi.VFIO_IOMMU_GET_INFO)).toBe('VFIO_IOMMU_GET_INFO|VFIO_DEVICE_GET_PCI_HOT_RESET_INFO');
  });

  it('knows that /dev/iommu serves both iommufd and the type1 compat container', () => {
    expect(uapi.ioctlName(uapi.IOMMU_IOAS_MAP, 'iommufd')).toBe('IOMMU_IOAS_MAP');
    expect(uapi.ioctlName(uapi.VFIO_IOMMU_MAP_DMA, 'iommufd')).toBe('VFIO_IOMMU_MAP_DMA');
    expect(uapi.ioctlName(uapi.IOMMU_IOAS_MAP, 'vfio-device')).toBeUndefined();
  });

  it('names a request no table knows as undefined', () => {
    expect(uapi.ioctlName(0x1234)).toBeUndefined();
  });

  it('encodes _IOR/_IOW/_IOWR with direction and size', () => {
    expect(uapi._IOWR(0xae, 0x05, 8)).toBe(0xc008ae05); // KVM_GET_SUPPORTED_CPUID
    expect(uapi._IOW(0xae, 0x46, 32)).toBe(0x4020ae46); // KVM_SET_USER_MEMORY_REGION
    expect(uapi._IOR(0xae, 0x9e, 8)).toBe(0x8008ae9e);
  });
});
