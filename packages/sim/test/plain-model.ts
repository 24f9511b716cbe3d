// A minimal PCI device model for infrastructure tests: config space and one BAR of memory.

import type { SimDeviceBus, SimPciModel } from '../src/index.js';
import { DenseBacking } from '../src/index.js';

export function plainModel(): SimPciModel {
  const config = new Uint8Array(256);
  const dv = new DataView(config.buffer);
  dv.setUint16(0, 0x1234, true);
  dv.setUint16(2, 0xbeef, true);
  dv.setUint32(8, 0x00ff0000, true);
  const bar = new DenseBacking(4096);
  let bus: SimDeviceBus | undefined;
  return {
    kind: 'plain',
    config,
    bars: [{ index: 0, size: 4096n, type: 'mem32', mmapAreas: [{ offset: 0n, size: 4096n }] }],
    interrupts: { intx: true, msi: 1, msix: 0 },
    barRead: (_b, offset, size) => {
      const out = new Uint8Array(8);
      bar.read(offset, out.subarray(0, size));
      return new DataView(out.buffer).getBigUint64(0, true);
    },
    barWrite: (_b, offset, size, value) => {
      const v = new Uint8Array(8);
      new DataView(v.buffer).setBigUint64(0, value, true);
      bar.write(offset, v.subarray(0, size));
    },
    barMemory: () => bar,
    reset: () => {},
    connect: (b) => {
      bus = b;
      void bus;
    },
  };
}
