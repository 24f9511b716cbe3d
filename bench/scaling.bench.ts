// How costs grow, on SimHost. Attach: the time per device to realize N vfio-pci devices stays
// flat from 1 to 256 devices (ratio = per-device time at 1 device over per-device time at N;
// 1.00x is flat). Dirty sync: the time of a VM's dirty sync grows linearly with guest size
// or better (ratio = time per GiB at the smallest guest over time per GiB at this size; 1.00x is
// linear, more is better: the kernel reports only dirty IOPTEs and the bitmap merge is bulk SIMD).

import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { VmDirtyTracking, migrationPlugin } from '@vmmkit/migration';
import { SimHost, type SimDeviceConfig } from '@vmmkit/sim';
import { median, type Benchmark, type Row } from './harness.js';

const TRIALS = 3;

function nics(n: number): SimDeviceConfig[] {
  return Array.from({ length: n }, (_, i) => ({
    bdf: `0000:${(1 + (i >> 5)).toString(16).padStart(2, '0')}:${(i & 31).toString(16).padStart(2, '0')}.0`,
    model: 'nic', group: 100 + i, migration: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: false },
  }));
}

async function vmm(host: SimHost, gib: number): Promise<Vmm> {
  const low = Math.min(gib, 3);
  const memory = [{ gpa: 0n, size: BigInt(low) << 30n }];
  if (gib > low) memory.push({ gpa: 4n << 30n, size: BigInt(gib - low) << 30n });
  const v = await Vmm.create({ host, memory, plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), migrationPlugin()] });
  v.addObject('iommufd,id=iommufd0');
  return v;
}

/**
 * Milliseconds per device to realize `n` devices on `backend`, into a VM whose container already
 * exists (one device realized first: creating the container maps guest RAM, once).
 */
async function attachPerDevice(n: number, backend: 'legacy' | 'iommufd'): Promise<number> {
  const devices = nics(n + 1);
  const host = new SimHost({ iommus: [{ id: 'iommu0', dirtyTracking: true }], devices, fdLimit: 8192 });
  const v = await vmm(host, 1);
  const add = (bdf: string | undefined) => v.addDevice(`vfio-pci,host=${bdf}${backend === 'iommufd' ? ',iommufd=iommufd0' : ''}`);
  await add(devices[0]!.bdf);
  const t0 = performance.now();
  for (const d of devices.slice(1)) await add(d.bdf);
  const ms = (performance.now() - t0) / n;
  await v.close();
  return ms;
}

/** Milliseconds of one dirty sync (IOMMU HWPT tracking) of a `gib` GiB guest. */
async function syncOnce(gib: number): Promise<number> {
  const [nic] = nics(1);
  const bdf = nic!.bdf!;
  const host = new SimHost({ iommus: [{ id: 'iommu0', dirtyTracking: true }], devices: [nic!] });
  const v = await vmm(host, gib);
  const device = (await v.addDevice(`vfio-pci,host=${bdf},iommufd=iommufd0`)) as VfioPciDevice;
  await device.configWrite(0x04, 2, 0x0006); // bus mastering on
  const tracking = new VmDirtyTracking(v);
  await tracking.start();
  await tracking.sync(false); // the first sync after start
  host.deviceDma(bdf, 0x1000n, new Uint8Array(64)); // one page dirty
  const t0 = performance.now();
  await tracking.sync(false);
  const ms = performance.now() - t0;
  await tracking.stop();
  await v.close();
  return ms;
}

export const scalingBenchmark: Benchmark = {
  name: 'scaling',
  async run(): Promise<Row[]> {
    const rows: Row[] = [];
    for (const backend of ['iommufd', 'legacy'] as const) {
      await attachPerDevice(16, backend); // warm up: compile every attach path once
      const per: number[] = [];
      for (const n of [1, 16, 64, 256]) {
        const samples: number[] = [];
        // A single attach is short and noisy: time it more often.
        for (let t = 0; t < (n === 1 ? 5 * TRIALS : TRIALS); t++) samples.push(await attachPerDevice(n, backend));
        per.push(median(samples));
        rows.push({
          benchmark: `attach time per device (${backend})`, case: `${n} device${n > 1 ? 's' : ''}`, ratio: per[0]! / per.at(-1)!,
          baseline: `1 device (${per[0]!.toFixed(2)} ms)`, note: `${per.at(-1)!.toFixed(2)} ms per device; 1.00x = flat`,
        });
      }
    }
    await syncOnce(4); // warm up
    const perGib: number[] = [];
    for (const gib of [4, 16, 64, 256]) {
      const samples: number[] = [];
      for (let t = 0; t < 2 * TRIALS; t++) samples.push(await syncOnce(gib));
      perGib.push(median(samples) / gib);
      rows.push({
        benchmark: 'dirty sync vs guest size (HWPT)', case: `${gib} GiB`, ratio: perGib[0]! / perGib.at(-1)!,
        baseline: `4 GiB (${perGib[0]!.toFixed(2)} ms/GiB)`, note: `${(perGib.at(-1)! * gib).toFixed(1)} ms per sync; 1.00x = linear, more = better`,
      });
    }
    return rows;
  },
};
