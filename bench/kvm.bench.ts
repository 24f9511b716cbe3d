// KVM, measured against baselines in the same run (skipped, saying why, without /dev/kvm):
// - vCPU exits per second through vmmkit's run loop (KVM_RUN in a worker thread, each port I/O
//   exit a round trip to the main thread) against a C KVM_RUN loop on one thread driving the
//   same guest (compiled here with gcc);
// - harvesting the dirty log of a 1 GiB guest (KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG, merged
//   into the migration bitmap), idle and with 10% of its pages dirtied by the guest, against a
//   copy of its 32 KiB bitmap;
// - pausing a running vCPU (immediate_exit and the kick, until it is parked) against a bare
//   cross-thread round trip (Atomics.notify to a worker, and its answer);
// - MMIO exits to a vfio-pci BAR (the simulated nic's BAR0 register, beside real KVM: the PCI host
//   bridge decodes the BAR, vfio-pci writes the region) against port I/O exits to a handler on
//   the same VM's bus.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AddressSpace, GuestMemory, LinuxHost, Vmm } from '@vmmkit/core';
import {
  DIRTY_GUEST, EXITS_GUEST, IoBus, KvmVcpu, KvmVm, MMIO_EXITS_GUEST, PAGES_GUEST, enterFlatProtectedMode, kvmPlugin, setCpuid, vcpuCpuid,
  type KvmAccel,
} from '@vmmkit/accel-kvm';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { HybridHost, NIC_A, NIC_RATE_PPS, simMachine } from '@vmmkit/sim';
import { kvmMissing, median, type Benchmark, type Row } from './harness.js';

const ENTRY = 0x1000n;

/** A VM with `ramBytes` of RAM and one vCPU whose port writes to 0x10..0x12 go to `onPort`. */
async function machine(ramBytes: bigint, onPort: (port: number) => void) {
  const host = new LinuxHost();
  const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: ramBytes, name: 'ram' }]);
  const as = new AddressSpace('system memory');
  await as.addSection({ kind: 'ram', start: 0n, size: ramBytes, block: memory.blocks[0]!, offset: 0n, readonly: false });
  const vm = KvmVm.create(host, { irqchip: 'off' });
  await vm.attach(as);
  const bus = new IoBus();
  bus.addPorts(0x10, 3, (a) => onPort(Number(a.addr)));
  const vcpu = KvmVcpu.create(host, vm.fd, 0, vm.system.vcpuMmapSize(), bus, () => {});
  setCpuid(host, vcpu.fd, vcpuCpuid(vm.system.supportedCpuid(), 0));
  vcpu.start();
  return {
    host, memory, vm, vcpu,
    async close() {
      await vcpu.close();
      await vm.close();
      memory.free();
    },
  };
}

/** The C baseline, built once with gcc into ~/.cache/vmmkit-bench. */
function cRunLoop(): string {
  const dir = join(homedir(), '.cache', 'vmmkit-bench');
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, 'kvm-run-loop');
  const source = fileURLToPath(new URL('../kvm-run-loop.c', import.meta.url));
  execFileSync('gcc', ['-O2', '-Wall', '-o', exe, source]);
  writeFileSync(join(dir, 'exits-guest.bin'), EXITS_GUEST);
  return exe;
}

async function exitsPerSecond(): Promise<Row> {
  const EXITS = 20_000;
  const TRIALS = 5;
  const exe = cRunLoop();
  const cTimes = execFileSync(exe, [join(homedir(), '.cache', 'vmmkit-bench', 'exits-guest.bin'), String(EXITS), String(TRIALS)], { encoding: 'utf8' })
    .trim().split('\n').map((l) => Number(l) / 1e6);
  let done: () => void = () => {};
  const m = await machine(1n << 20n, (port) => { if (port === 0x12) done(); });
  const ours: number[] = [];
  try {
    m.memory.view(ENTRY, EXITS_GUEST.byteLength).set(EXITS_GUEST);
    for (let t = 0; t < TRIALS; t++) {
      enterFlatProtectedMode(m.host, m.vcpu.fd, ENTRY, { rcx: BigInt(EXITS) });
      const finished = new Promise<void>((r) => (done = r));
      const t0 = performance.now();
      m.vcpu.resume();
      await finished;
      ours.push(performance.now() - t0);
      await m.vcpu.whenStill();
    }
  } finally {
    await m.close();
  }
  const c = median(cTimes);
  const js = median(ours);
  return {
    benchmark: 'KVM run loop, port I/O exits', case: `${EXITS} exits`, ratio: c / js, baseline: 'C KVM_RUN loop, one thread (gcc -O2)',
    note: `vmmkit ${Math.round(EXITS / (js / 1000))} exits/s, C ${Math.round(EXITS / (c / 1000))} exits/s`,
  };
}

async function dirtyLogHarvest(): Promise<Row[]> {
  const RAM = 1n << 30n;
  const pages = Number(RAM) / 4096;
  let done: () => void = () => {};
  const m = await machine(RAM, (port) => { if (port === 0x12) done(); });
  const rows: Row[] = [];
  try {
    const memory = m.memory;
    m.memory.view(ENTRY, DIRTY_GUEST.byteLength).set(DIRTY_GUEST);
    memory.startDirtyLog();
    await m.vm.dirtyLog.start(memory);
    const bitmap = new Uint8Array(pages / 8).fill(0x5a);
    const copy = new Uint8Array(pages / 8);
    for (const [label, stride] of [['idle', 0], ['10% dirty', 10]] as const) {
      const harvest: number[] = [];
      const memcpy: number[] = [];
      let found = 0;
      for (let t = 0; t < 9; t++) {
        if (stride) {
          // The guest dirties every 10th page from 2 MiB up, then halts.
          enterFlatProtectedMode(m.host, m.vcpu.fd, ENTRY, { rax: BigInt(t), rcx: BigInt(stride), rdi: 2n << 20n, rbp: RAM });
          const finished = new Promise<void>((r) => (done = r));
          m.vcpu.resume();
          await finished;
          await m.vcpu.whenStill();
        }
        let t0 = performance.now();
        copy.set(bitmap);
        memcpy.push(performance.now() - t0);
        memory.blocks[0]!.dirty!.clear();
        t0 = performance.now();
        found = await m.vm.dirtyLog.sync(memory);
        harvest.push(performance.now() - t0);
      }
      rows.push({
        benchmark: 'KVM dirty log harvest, 1 GiB guest', case: label, ratio: median(memcpy) / median(harvest),
        baseline: 'copy of its 32 KiB bitmap', note: `${found} pages found; harvest ${median(harvest).toFixed(3)} ms`,
      });
    }
    m.vm.dirtyLog.stop(memory);
    memory.stopDirtyLog();
  } finally {
    await m.close();
  }
  return rows;
}

async function pauseTime(): Promise<Row> {
  // The floor: a worker thread woken with Atomics.notify answers with Atomics.notify.
  const sab = new SharedArrayBuffer(8);
  const flag = new Int32Array(sab);
  const worker = new Worker(`
    const { workerData } = require('node:worker_threads');
    const f = new Int32Array(workerData);
    for (;;) { Atomics.wait(f, 0, 0); if (f[0] === 2) break; Atomics.store(f, 0, 0); Atomics.store(f, 1, f[1] + 1); Atomics.notify(f, 1); }
  `, { eval: true, workerData: sab });
  const roundTrip: number[] = [];
  for (let t = 0; t < 50; t++) {
    const before = Atomics.load(flag, 1);
    const t0 = performance.now();
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    const w = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync(flag, 1, before);
    if (w.async) await w.value;
    roundTrip.push(performance.now() - t0);
  }
  Atomics.store(flag, 0, 2);
  Atomics.notify(flag, 0);
  await worker.terminate();
  const m = await machine(8n << 20n, () => {});
  const pauses: number[] = [];
  try {
    m.memory.view(ENTRY, PAGES_GUEST.byteLength).set(PAGES_GUEST);
    enterFlatProtectedMode(m.host, m.vcpu.fd, ENTRY, { rax: 1n, rcx: 63n, rdi: 1n << 20n, rbp: 0n, rsp: 0xfffffn });
    for (let t = 0; t < 30; t++) {
      m.vcpu.resume();
      await new Promise((r) => setTimeout(r, 2));
      const t0 = performance.now();
      await m.vcpu.pause();
      pauses.push(performance.now() - t0);
    }
  } finally {
    await m.close();
  }
  return {
    benchmark: 'KVM pause of a running vCPU', case: 'immediate_exit + SIGUSR2 kick, until parked', ratio: median(roundTrip) / median(pauses),
    baseline: 'Atomics round trip to a worker', note: `pause ${(median(pauses) * 1000).toFixed(0)} µs, round trip ${(median(roundTrip) * 1000).toFixed(0)} µs`,
  };
}

async function barExitsPerSecond(): Promise<Row> {
  const EXITS = 5000;
  const TRIALS = 5;
  const BAR0 = 0xe000_0000n;
  const host = HybridHost.create(simMachine({ edus: 0, nics: 1 }));
  const vmm = await Vmm.create({ host, plugins: [kvmPlugin(), legacyType1Plugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 1n << 20n, name: 'ram' }] });
  const times: Record<'port' | 'bar', number[]> = { port: [], bar: [] };
  try {
    vmm.pause('setup');
    const accel = (await vmm.addDevice('kvm,id=kvm0,irqchip=off')) as KvmAccel;
    const nic = (await vmm.addDevice(`vfio-pci,id=nic0,host=${NIC_A}`)) as VfioPciDevice;
    // Firmware's part: BAR0 placed, memory decode on.
    await nic.configWrite(0x10, 4, Number(BAR0));
    await nic.configWrite(0x04, 2, (await nic.configRead(0x04, 2)) | 0x2);
    let done: () => void = () => {};
    accel.io.addPorts(0x10, 3, (a) => { if (a.addr === 0x12n) done(); });
    for (let t = 0; t < TRIALS; t++) {
      for (const [kind, guest] of [['port', EXITS_GUEST], ['bar', MMIO_EXITS_GUEST]] as const) {
        vmm.memory.view(ENTRY, guest.byteLength).set(guest);
        enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, ENTRY, { rcx: BigInt(EXITS), rdi: BAR0 + BigInt(NIC_RATE_PPS) });
        const finished = new Promise<void>((r) => (done = r));
        const t0 = performance.now();
        vmm.resume('bench');
        await finished;
        times[kind].push(performance.now() - t0);
        vmm.pause('bench');
        await accel.pauseVcpus();
      }
    }
  } finally {
    await vmm.close();
  }
  const port = median(times.port);
  const bar = median(times.bar);
  return {
    benchmark: 'KVM MMIO exits to a vfio-pci BAR', case: `${EXITS} writes to the simulated nic's BAR0`, ratio: port / bar,
    baseline: 'port I/O exits to a handler, same VM',
    note: `BAR ${Math.round(EXITS / (bar / 1000))} exits/s, port I/O ${Math.round(EXITS / (port / 1000))} exits/s`,
  };
}

export const kvmBenchmark: Benchmark = {
  name: 'kvm',
  async run(): Promise<Row[]> {
    const missing = kvmMissing();
    if (missing) {
      process.stderr.write(`kvm: skipped (${missing})\n`);
      return [];
    }
    return [await exitsPerSecond(), ...(await dirtyLogHarvest()), await pauseTime(), await barExitsPerSecond()];
  },
};

