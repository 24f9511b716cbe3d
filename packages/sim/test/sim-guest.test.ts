// @vmmkit/sim/testing's simulated guest: its nic driver (setup, slots handed back), the seeded
// vCPU stores, the working set and populate(), the RAM hash, the timer-driven runner and the
// machines. The nics are driven through raw VFIO device fds here (no vfio-pci in this package).

import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Vmm } from '@vmmkit/core';
import {
  NIC_IRQ_BATCH, NIC_RATE_PPS, NIC_RX_DROPS, NIC_RX_HEAD, NIC_RX_PACKETS, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE, NIC_RX_RING_SIZE, NIC_RX_TAIL,
  SimHost, type SimHostConfig,
} from '../src/index.js';
import {
  EDU, EDU2, NIC_A, NIC_B, SIM_GUEST_RING, SimGuest, TIMED_GUEST_RING_BASE, TWO_EDU_MACHINE, nicRingBytes, ramHash, simMachine, timedGuest,
  type SimNicFunction,
} from '../src/testing/index.js';
import { CONFIG, bar, identityDma, openDevice } from './device-harness.js';

const RING = 0x10_0000n;
const MiB = 1n << 20n;

/** A PCI function's config space and BARs over its VFIO device fd, as a guest sees them. */
function rawFunction(host: SimHost, bdf: string): SimNicFunction {
  const fd = openDevice(host, bdf);
  const read = (offset: bigint, size: number): bigint => {
    const b = new Uint8Array(8);
    expect(host.pread(fd, b.subarray(0, size), offset)).toBe(size);
    return new DataView(b.buffer).getBigUint64(0, true);
  };
  const write = (offset: bigint, size: number, value: bigint): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    expect(host.pwrite(fd, b.subarray(0, size), offset)).toBe(size);
  };
  return {
    configRead: (offset, size) => Number(read(CONFIG + BigInt(offset), size)),
    configWrite: (offset, size, value) => write(CONFIG + BigInt(offset), size, BigInt(value)),
    barRead: (index, offset, size) => read(bar(index, offset), size),
    barWrite: (index, offset, size, value) => write(bar(index, offset), size, value),
  };
}

/** A VM of 8 MiB below 4 GiB and 4 MiB above, with nothing but RAM. */
async function vmOn(host: SimHost): Promise<Vmm> {
  return Vmm.create({ host, plugins: [], memory: [{ gpa: 0n, size: 8n * MiB }, { gpa: 1n << 32n, size: 4n * MiB }] });
}

/** Whether any byte of `memory` in [gpa, gpa + length) is not zero. */
function written(vmm: Vmm, gpa: bigint, length: number): boolean {
  return vmm.memory.view(gpa, length).some((b) => b !== 0);
}

describe('the nic driver', () => {
  it('enables the function, programs the ring and receives; the slots it hands back keep the ring from filling', async () => {
    const host = new SimHost(simMachine({ nics: 1 }));
    const nic = rawFunction(host, NIC_A);
    identityDma(host, NIC_A, RING, Number(nicRingBytes(SIM_GUEST_RING)));
    const vmm = await vmOn(host);
    const guest = new SimGuest(vmm, host, [{ nic, ring: RING }]);
    await guest.setUpNics();
    expect(host.kernel.device(NIC_A).busMaster).toBe(true);
    expect((await nic.barRead(0, NIC_RX_RING_BASE, 8))).toBe(RING);
    expect((await nic.barRead(0, NIC_RX_RING_SIZE, 4))).toBe(128n);
    expect((await nic.barRead(0, NIC_RX_PKT_SIZE, 4))).toBe(2048n);
    expect((await nic.barRead(0, NIC_RATE_PPS, 4))).toBe(20_000n);
    expect((await nic.barRead(0, NIC_IRQ_BATCH, 4))).toBe(64n);
    // 10 steps of 2 ms at 20000 packets/s: 400 packets through a ring of 128 slots.
    for (let i = 0; i < 10; i++) await guest.step();
    expect((await nic.barRead(0, NIC_RX_PACKETS, 8))).toBe(400n);
    expect((await nic.barRead(0, NIC_RX_DROPS, 8))).toBe(0n);
    expect((await nic.barRead(0, NIC_RX_TAIL, 4))).toBe((await nic.barRead(0, NIC_RX_HEAD, 4)));
    // Time passing without the driver: the ring fills and the nic drops.
    host.advance(20);
    expect((await nic.barRead(0, NIC_RX_DROPS, 8))).toBeGreaterThan(0n);
    await vmm.close();
  });

  it('lays the timed guest\'s rings from 16 MiB, 512 KiB each, at the packet rate asked for', async () => {
    const host = new SimHost(simMachine());
    const nics = [rawFunction(host, NIC_A), rawFunction(host, NIC_B)];
    const vmm = await vmOn(host);
    await timedGuest(vmm, host, nics, { packetsPerSecond: 5000 }).guest.setUpNics();
    expect(await Promise.all(nics.map((n) => n.barRead(0, NIC_RX_RING_BASE, 8)))).toEqual([TIMED_GUEST_RING_BASE, TIMED_GUEST_RING_BASE + 512n * 1024n]);
    expect(await Promise.all(nics.map((n) => n.barRead(0, NIC_RX_RING_SIZE, 4)))).toEqual([256n, 256n]);
    expect(await Promise.all(nics.map((n) => n.barRead(0, NIC_RATE_PPS, 4)))).toEqual([5000n, 5000n]);
    await vmm.close();
  });
});

describe('the vCPU stores', () => {
  it('are the same for the same seed and others for another seed', async () => {
    const hashes: string[] = [];
    for (const seed of [undefined, undefined, 7]) {
      const host = new SimHost({});
      const vmm = await vmOn(host);
      const guest = new SimGuest(vmm, host, [], { seed });
      for (let i = 0; i < 3; i++) await guest.step();
      expect(guest.writes).toBe(3 * 64);
      hashes.push(ramHash(vmm.memory));
      await vmm.close();
    }
    expect(hashes[1]).toBe(hashes[0]);
    expect(hashes[2]).not.toBe(hashes[0]);
  });

  it('land only in the working set, and only while the VM runs', async () => {
    const host = new SimHost({});
    const vmm = await vmOn(host);
    const guest = new SimGuest(vmm, host, [], { workingSet: 0.25, storesPerStep: 256, msPerStep: 3 });
    expect(guest.workingSetBytes).toBe(3 * 1024 * 1024);
    for (let i = 0; i < 4; i++) await guest.step();
    expect(written(vmm, 0n, 2 << 20)).toBe(true);
    expect(written(vmm, 2n * MiB, 6 << 20)).toBe(false);
    expect(written(vmm, 1n << 32n, 1 << 20)).toBe(true);
    expect(written(vmm, (1n << 32n) + MiB, 3 << 20)).toBe(false);
    expect(host.kernel.now).toBe(12);
    vmm.pause();
    const before = ramHash(vmm.memory);
    await guest.step();
    expect([guest.writes, host.kernel.now, ramHash(vmm.memory)]).toEqual([4 * 256, 12, before]);
    await vmm.close();
  });

  it('populate() fills the working set with data and leaves the rest', async () => {
    const host = new SimHost({});
    const vmm = await vmOn(host);
    new SimGuest(vmm, host, [], { workingSet: 0.5 }).populate();
    for (let page = 0n; page < 4n * MiB; page += 4096n) expect(written(vmm, page, 4096), `page 0x${page.toString(16)}`).toBe(true);
    expect(written(vmm, 4n * MiB, 4 << 20)).toBe(false);
    expect(written(vmm, 1n << 32n, 2 << 20)).toBe(true);
    expect(written(vmm, (1n << 32n) + 2n * MiB, 2 << 20)).toBe(false);
    await vmm.close();
  });
});

it('ramHash is the SHA-256 of the RAM blocks in guest-physical order', async () => {
  const host = new SimHost({});
  const vmm = await Vmm.create({ host, plugins: [], memory: [{ gpa: 1n << 32n, size: MiB }, { gpa: 0n, size: 2n * MiB }] });
  vmm.memory.write(0x1234n, new Uint8Array([1, 2, 3]));
  vmm.memory.write((1n << 32n) + 7n, new Uint8Array([9]));
  const expected = createHash('sha256').update(vmm.memory.view(0n, 2 << 20)).update(vmm.memory.view(1n << 32n, 1 << 20)).digest('hex');
  expect(ramHash(vmm.memory)).toBe(expected);
  vmm.memory.write(0x1234n, new Uint8Array([4]));
  expect(ramHash(vmm.memory)).not.toBe(expected);
  await vmm.close();
});

describe('the timed guest', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('stores at its rate per second of wall time, sets the nics up only on start(), and stops', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const host = new SimHost(simMachine({ nics: 1 }));
    const nic = rawFunction(host, NIC_A);
    const vmm = await vmOn(host);
    const resumed = timedGuest(vmm, host, [nic], { writeBytesPerSecond: 64_000 });
    resumed.resume();
    vi.advanceTimersByTime(1000);
    resumed.stop();
    // A migrated guest's drivers are not set up again.
    expect((await nic.barRead(0, NIC_RX_RING_SIZE, 4))).toBe(0n);
    // 5 ms ticks of 5 stores (64000 B/s): 1000 stores in a second, 1 s of virtual time.
    expect([resumed.guest.writes, host.kernel.now]).toEqual([1000, 1000]);

    const started = timedGuest(vmm, host, [nic], { writeBytesPerSecond: 64_000 });
    await started.start();
    expect((await nic.barRead(0, NIC_RX_RING_BASE, 8))).toBe(TIMED_GUEST_RING_BASE);
    vi.advanceTimersByTime(100);
    vmm.pause();
    vi.advanceTimersByTime(100);
    expect(started.guest.writes).toBe(100);
    started.stop();
    expect(vi.getTimerCount()).toBe(0);
    await vmm.close();
  });
});

describe('the machines', () => {
  const bdfs = (m: SimHostConfig) => m.devices?.map((d) => `${d.bdf} ${String(d.model)} ${d.group}`);

  it('default to the demo machine: an edu and two nics that migrate, in PCI address order', () => {
    const m = simMachine();
    expect(bdfs(m)).toEqual([`${EDU} edu 3`, `${NIC_A} nic 5`, `${NIC_B} nic 6`]);
    expect(m.iommus).toEqual([{ id: 'iommu0', dirtyTracking: true, awBits: 48 }]);
    expect(m.devices?.[1]?.migration).toEqual({ flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: true });
  });

  it('take the devices, the IOMMU and the nics\' migration from the options', () => {
    const m = simMachine({ edus: 2, nics: 1, awBits: 39, iommuDirtyTracking: false, dmaLogging: false, migrationFlags: ['STOP_COPY'] });
    expect(bdfs(m)).toEqual([`${EDU} edu 3`, `${EDU2} edu 4`, `${NIC_A} nic 5`]);
    expect(m.iommus).toEqual([{ id: 'iommu0', dirtyTracking: false, awBits: 39 }]);
    expect(m.devices?.[2]?.migration).toEqual({ flags: ['STOP_COPY'], dmaLogging: false });
    expect(bdfs(TWO_EDU_MACHINE)).toEqual([`${EDU} edu 3`, `${EDU2} edu 4`]);
    expect(new SimHost(m).kernel.devices.size).toBe(3);
  });
});
