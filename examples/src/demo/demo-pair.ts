// The two ends of the demo's migration: the source VMM on its SimHost with the guest at work,
// and the destination VMM on a second SimHost, created paused (incoming) with the same VM.

import { NIC_A, NIC_B, SimHost, simMachine, timedGuest, type SimGuestRunner } from '@vmmkit/sim';
import { createDemoVm, type DemoVm } from '../guest/demo-vm.js';
import { DEMO_WORKLOAD, type DemoScenario } from './demo-scenario.js';

/** The NICs by name, as the demo shows them. */
export const DEMO_NICS = [{ name: 'NIC A', host: NIC_A }, { name: 'NIC B', host: NIC_B }] as const;

/** One end: its host and its VM. */
export interface DemoSide {
  readonly host: SimHost;
  readonly vm: DemoVm;
}

export interface DemoPair {
  readonly scenario: DemoScenario;
  readonly source: DemoSide;
  readonly destination: DemoSide;
  /** The guest, running on the source. */
  readonly activity: SimGuestRunner;
  /** Stop the guest and close both VMMs. */
  close(): Promise<void>;
}

/**
 * Create both ends for `scenario` with `memoryMiB` of guest RAM, and boot the guest: its working
 * set filled with data. The guest's work starts with `activity.start()`.
 */
export async function createDemoPair(scenario: DemoScenario, memoryMiB: number): Promise<DemoPair> {
  const sourceHost = new SimHost(simMachine(scenario.machine));
  const destinationHost = new SimHost(simMachine(scenario.machine));
  const source = await createDemoVm(sourceHost, { ...scenario.vm, memoryMiB, name: 'source' });
  let destination: DemoVm;
  try {
    destination = await createDemoVm(destinationHost, { ...scenario.vm, memoryMiB, name: 'destination', incoming: true });
  } catch (e) {
    await source.vmm.close();
    throw e;
  }
  const activity = timedGuest(source.vmm, sourceHost, source.nics, DEMO_WORKLOAD);
  activity.guest.populate();
  return {
    scenario, activity,
    source: { host: sourceHost, vm: source },
    destination: { host: destinationHost, vm: destination },
    async close() {
      activity.stop();
      // Both close even if one fails; the first failure is reported.
      const closed = await Promise.allSettled([source.vmm.close(), destination.vmm.close()]);
      const failed = closed.find((c) => c.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}
