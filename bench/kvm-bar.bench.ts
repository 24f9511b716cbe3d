// KVM guest writes to a BAR's mmapped memory (skipped, saying why, without /dev/kvm): a vfio-user
// nic served in this process over a Unix socket, its BAR2 memory a memfd the client mmaps and KVM
// maps as a memslot. Measured against the same guest loop writing guest RAM (the best the guest
// can do), with the same writes trapped (each an MMIO exit served through vfio-pci from the
// mapping) in the note. On kvm_pvm (these machines) a guest without paging runs far below
// hardware speed, RAM writes included: the ratio is what carries over, not the rates.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LinuxHost, Vmm } from '@vmmkit/core';
import { MMIO_EXITS_GUEST, enterFlatProtectedMode, kvmPlugin, type KvmAccel } from '@vmmkit/accel-kvm';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { NIC_BAR2_REG_PAGE, createModel } from '@vmmkit/sim';
import { serveSocket } from '@vmmkit/vfio-user-server';
import { kvmMissing, median, type Benchmark, type Row } from './harness.js';

const ENTRY = 0x1000n;
const RAM_TARGET = 0x20_0000n;
const BAR2 = 0xe010_0000n;
const TRAPPED_BAR2 = 0xe020_0000n;
const AREA = BigInt(NIC_BAR2_REG_PAGE + 0x1000); // BAR2's second mmapped area
const WRITES = 300_000;
const TRAPPED_WRITES = 2_000;
const TRIALS = 5;

/** Place BAR2 at `at` with memory decode on, as firmware would, and let the host bridge map it now. */
async function placeBar2(accel: KvmAccel, nic: VfioPciDevice, at: bigint): Promise<void> {
  await nic.configWrite(0x18, 4, Number(at & 0xffff_ffffn));
  await nic.configWrite(0x1c, 4, Number(at >> 32n));
  await nic.configWrite(0x04, 2, (await nic.configRead(0x04, 2)) | 0x2);
  accel.pciHost!.invalidate();
  await accel.pciHost!.windows.current();
}

async function barMemoryWrites(): Promise<Row> {
  const host = new LinuxHost();
  const dir = mkdtempSync(join(tmpdir(), 'vmmkit-bench-bar-'));
  const server = serveSocket(join(dir, 'nic.sock'), { model: createModel({ model: 'nic', bdf: '0000:00:05.0' }), host });
  const times: Record<'ram' | 'bar' | 'trapped', number[]> = { ram: [], bar: [], trapped: [] };
  try {
    const vmm = await Vmm.create({ host, plugins: [kvmPlugin(), vfioUserPlugin()], memory: [{ gpa: 0n, size: 4n << 20n, name: 'ram' }], memoryBacking: 'memfd' });
    try {
      vmm.pause('setup');
      const accel = (await vmm.addDevice('kvm,id=kvm0,irqchip=off')) as KvmAccel;
      const nic = (await vmm.addDevice(`vfio-user-pci,id=nic0,socket=${server.path}`)) as VfioPciDevice;
      let done: () => void = () => {};
      accel.io.addPorts(0x12, 1, () => done());
      const run = async (target: bigint, writes: number): Promise<number> => {
        vmm.memory.view(ENTRY, MMIO_EXITS_GUEST.byteLength).set(MMIO_EXITS_GUEST);
        enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, ENTRY, { rcx: BigInt(writes), rdi: target, rax: 0x5a5an });
        const finished = new Promise<void>((r) => (done = r));
        const t0 = performance.now();
        vmm.resume('bench');
        await finished;
        const elapsed = performance.now() - t0;
        vmm.pause('bench');
        await accel.pauseVcpus();
        return elapsed;
      };
      await placeBar2(accel, nic, BAR2);
      if (accel.vm.memslots.deviceSlots.length < 2) throw new Error(`BAR2 is not mapped: ${accel.barMappings.errors.join('; ')}`);
      for (let t = 0; t < TRIALS; t++) {
        times.ram.push(await run(RAM_TARGET, WRITES));
        times.bar.push(await run(BAR2 + AREA, WRITES));
      }
      // The same BAR with its memory not offered: every write exits.
      nic.barMemory = () => [];
      await placeBar2(accel, nic, TRAPPED_BAR2);
      if (accel.vm.memslots.deviceSlots.length > 0) throw new Error('BAR2 is still mapped');
      for (let t = 0; t < TRIALS; t++) times.trapped.push(await run(TRAPPED_BAR2 + AREA, TRAPPED_WRITES));
    } finally {
      await vmm.close();
    }
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const rate = (writes: number, ms: number): number => writes / (ms / 1000);
  const ram = rate(WRITES, median(times.ram));
  const bar = rate(WRITES, median(times.bar));
  const trapped = rate(TRAPPED_WRITES, median(times.trapped));
  const fmt = (r: number): string => (r >= 1e6 ? `${(r / 1e6).toFixed(1)}M` : `${(r / 1e3).toFixed(1)}k`);
  return {
    benchmark: 'KVM guest writes to a vfio-user BAR\'s mmapped memory (memslot)', case: `${WRITES} 32-bit writes to the nic's BAR2`, ratio: bar / ram,
    baseline: 'the same writes to guest RAM',
    note: `BAR ${fmt(bar)}/s, RAM ${fmt(ram)}/s; trapped (an MMIO exit each) ${fmt(trapped)}/s, ${Math.round(bar / trapped)}x slower than the memslot`,
  };
}

export const kvmBarBenchmark: Benchmark = {
  name: 'kvm-bar',
  async run(): Promise<Row[]> {
    const missing = kvmMissing();
    if (missing) {
      process.stderr.write(`kvm-bar: skipped (${missing})\n`);
      return [];
    }
    return [await barMemoryWrites()];
  },
};
