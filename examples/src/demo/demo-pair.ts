// The two ends of the demo's migration: the source VMM on its SimHost with the guest at work,
// and the destination VMM on a second SimHost, created paused (incoming) with the same VM. With
// KVM, each VM runs on KVM with its NICs simulated beside it (HybridHost), the guest is real
// code on a vCPU, and the destination's state is recorded as it starts (its guest runs on).

import { createHash } from 'node:crypto';
import type { HostKernel } from '@vmmkit/core';
import { HybridHost, NIC_A, NIC_B, SimHost, ramHash, simMachine, timedGuest } from '@vmmkit/sim';
import { createDemoVm, type DemoVm } from '../guest/demo-vm.js';
import { javascriptActivity, type DemoActivity } from './demo-activity.js';
import { DEMO_WORKLOAD, type DemoScenario } from './demo-scenario.js';
import { KvmGuestReports, kvmActivity } from './kvm-demo-guest.js';

/** The NICs by name, as the demo shows them. */
export const DEMO_NICS = [{ name: 'NIC A', host: NIC_A }, { name: 'NIC B', host: NIC_B }] as const;

/** One end: its host, the simulated machine in it, and its VM. */
export interface DemoSide {
  readonly host: HostKernel;
  readonly sim: SimHost;
  readonly vm: DemoVm;
}

/** The destination as its guest started: RAM and each NIC's device state (SHA-256). */
export interface DemoStartState {
  readonly ram: string;
  readonly devices: ReadonlyMap<string, string>;
}

export interface DemoPair {
  readonly scenario: DemoScenario;
  readonly source: DemoSide;
  readonly destination: DemoSide;
  /** The guest, running on the source. */
  readonly activity: DemoActivity;
  /** With KVM: the destination as it started, and what its guest reports. */
  readonly kvm?: { readonly atStart: () => DemoStartState | undefined; readonly sourceReports: KvmGuestReports; readonly destinationReports: KvmGuestReports };
  /** Stop the guest and close both VMMs. */
  close(): Promise<void>;
}

/**
 * Create both ends for `scenario` with `memoryMiB` of guest RAM, and boot the guest: its working
 * set filled with data. The guest's work starts with `activity.start()`.
 */
export async function createDemoPair(scenario: DemoScenario, memoryMiB: number, o: { kvm?: boolean } = {}): Promise<DemoPair> {
  const side = (): { host: HostKernel; sim: SimHost } => {
    if (!o.kvm) {
      const sim = new SimHost(simMachine(scenario.machine));
      return { host: sim, sim };
    }
    const hybrid = HybridHost.create(simMachine(scenario.machine));
    return { host: hybrid, sim: hybrid.sim };
  };
  const sourceSide = side();
  const destinationSide = side();
  let atStart: DemoStartState | undefined;
  const source = await createDemoVm(sourceSide.host, { ...scenario.vm, memoryMiB, name: 'source', kvm: o.kvm });
  let destination: DemoVm;
  try {
    destination = await createDemoVm(destinationSide.host, {
      ...scenario.vm, memoryMiB, name: 'destination', incoming: true, kvm: o.kvm,
      // Before the kvm device's own listener: the state is taken before the vCPU runs.
      beforeDevices: (vmm) => vmm.events.on('vm:run-state', (e) => {
        if (!o.kvm || !e.running || atStart) return;
        const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
        atStart = { ram: ramHash(vmm.memory), devices: new Map(DEMO_NICS.map((n) => [n.host, sha(destinationSide.sim.deviceState(n.host))])) };
      }),
    });
  } catch (e) {
    await source.vmm.close();
    throw e;
  }
  const kvmGuest = source.accel ? kvmActivity(source.vmm, source.accel, sourceSide.sim) : undefined;
  const activity = kvmGuest ?? javascriptActivity(timedGuest(source.vmm, sourceSide.sim, source.nics, DEMO_WORKLOAD));
  return {
    scenario, activity,
    source: { ...sourceSide, vm: source },
    destination: { ...destinationSide, vm: destination },
    kvm: destination.accel && kvmGuest
      ? { atStart: () => atStart, sourceReports: kvmGuest.reports, destinationReports: new KvmGuestReports(destination.accel) }
      : undefined,
    async close() {
      activity.stop();
      // Both close even if one fails; the first failure is reported.
      const closed = await Promise.allSettled([source.vmm.close(), destination.vmm.close()]);
      const failed = closed.find((c) => c.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}
