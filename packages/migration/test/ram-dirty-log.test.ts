// The RAM dirty-log provider interface: writes the VMM makes behind GuestMemory's back (as KVM's
// vCPUs do) reach the destination only through a provider that reports them.

import { describe, expect, it } from 'vitest';
import type { GuestMemory, Vmm } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, ramHash, simMachine } from '@vmmkit/sim/testing';
import { RamDirtyLogProviders, migrate, type RamDirtyLogProvider } from '../src/index.js';
import { addNic, vmOn } from './machines.js';

/** A stand-in for KVM: guest writes go straight into RAM, and the provider remembers their pages. */
class DirectWrites implements RamDirtyLogProvider {
  readonly name = 'direct-writes';
  readonly calls: string[] = [];
  #pending: bigint[] = [];

  constructor(private readonly report: boolean) {}

  write(vmm: Vmm, gpa: bigint, byte: number): void {
    vmm.memory.view(gpa, 1)[0] = byte; // no dirty log: the hardware would not tell GuestMemory
    this.#pending.push(gpa);
  }

  start(): void {
    this.calls.push('start');
  }

  sync(memory: GuestMemory): number {
    this.calls.push('sync');
    let newly = 0;
    if (this.report) for (const gpa of this.#pending) newly += memory.markDirty(gpa, 1n);
    this.#pending = [];
    return newly;
  }

  stop(): void {
    this.calls.push('stop');
  }
}

describe('RAM dirty-log providers', () => {
  it.each([
    ['a provider that reports its writes loses nothing', true],
    ['a provider that forgets them leaves the destination different', false],
  ])('%s', async (_, report) => {
    const provider = new DirectWrites(report);
    const source = await vmOn(new SimHost(simMachine()));
    source.container.register(RamDirtyLogProviders, { useValue: provider });
    const destination = await vmOn(new SimHost(simMachine()), { incoming: true });
    let byte = 1;
    source.events.on('migration:iteration', () => {
      for (let page = 0n; page < 64n; page++) provider.write(source, page * 0x1_0000n + 17n, byte++ & 0xff);
    });
    const syncs: number[] = [];
    source.events.on('migration:dirty-sync', (e) => syncs.push(e.providers.find((p) => p.name === 'direct-writes')?.pages ?? -1));
    // Without checksums: with them, the in-process pair (which hands the destination views of the
    // source's RAM) lets it see the forgotten writes as pages that changed after their digest,
    // and it refuses them instead of starting a different guest.
    await migrate(source, destination, { maxIterations: 3, downtimeLimitMs: 0, integrity: report });
    expect(provider.calls[0]).toBe('start');
    expect(provider.calls.at(-1)).toBe('stop');
    // The same 64 pages each iteration: each sync finds them dirty again.
    expect(syncs.slice(0, 2)).toEqual(report ? [64, 64] : [0, 0]);
    if (report) expect(ramHash(destination.memory)).toBe(ramHash(source.memory));
    else expect(ramHash(destination.memory)).not.toBe(ramHash(source.memory));
    await source.close();
    await destination.close();
  });

  it('the devices stop only once the provider\'s writers have stopped (vCPUs before devices, as QEMU pauses them)', async () => {
    const order: string[] = [];
    const provider: RamDirtyLogProvider = {
      name: 'slow-vcpus', start: () => {}, sync: () => 0, stop: () => {},
      // A vCPU finishing an access to a device after the VM paused.
      quiesce: async () => {
        await new Promise((r) => setTimeout(r, 20));
        order.push('vCPUs still');
      },
    };
    const source = await vmOn(new SimHost(simMachine()));
    source.container.register(RamDirtyLogProviders, { useValue: provider });
    await addNic(source, NIC_A, 'iommufd');
    const destination = await vmOn(new SimHost(simMachine()), { incoming: true });
    await addNic(destination, NIC_A, 'iommufd');
    source.events.on('migration:device-state', (e) => { if (e.to === 'STOP_COPY' || e.to === 'STOP') order.push(`device ${e.to}`); });
    await migrate(source, destination, { maxIterations: 2, downtimeLimitMs: 0 });
    expect(order[0]).toBe('vCPUs still');
    expect(order.slice(1).length).toBeGreaterThan(0);
    await source.close();
    await destination.close();
  });
});
