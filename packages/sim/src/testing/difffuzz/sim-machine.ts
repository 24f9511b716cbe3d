// The machine the differential fuzzer runs SimHost as: the kernel tier's guest (two QEMU edu
// devices behind an emulated VT-d with a 39-bit address width and no dirty tracking, each in its
// own IOMMU group, and an mdev migrating as mtty does: STOP_COPY, P2P and PRE_COPY, with DMA logging).

import { ArgumentError } from '@vmmkit/core';
import type { SimHostConfig } from '../../config.js';
import type { SimKernelVersion } from '../../kernel/linux-series.js';
import type { FuzzMachine } from './run.js';

/** Where the guest's devices are: their names and IOMMU group numbers (as the real kernel numbered them). */
export interface FuzzMachineLayout {
  readonly edu: readonly [string, string];
  readonly mdev: string;
  /** Group numbers of the two edu functions and the mdev. */
  readonly groups: readonly [number, number, number];
}

/** The standard layout: the tier guest's BDFs, a fixed mdev UUID, groups 1, 2 and 3. */
export const DEFAULT_LAYOUT: FuzzMachineLayout = {
  edu: ['0000:00:03.0', '0000:00:04.0'], mdev: '5d7c6f0a-7c33-4a50-9e1b-0fb1a4c0aa01', groups: [1, 2, 3],
};

/** The layout of a machine found on a host (discoverMachine), to build SimHost the same. */
export function layoutOf(machine: FuzzMachine): FuzzMachineLayout {
  const [a, b, m] = machine.devices;
  if (!a || !b || !m || a.mdev || b.mdev || !m.mdev) throw new ArgumentError('difffuzz: the machine must be two PCI functions and an mdev');
  return { edu: [a.name, b.name], mdev: m.name, groups: [a.group, b.group, m.group] };
}

/** SimHost's config for the fuzzed machine. */
export function fuzzMachineConfig(kernel: SimKernelVersion, layout: FuzzMachineLayout = DEFAULT_LAYOUT): SimHostConfig {
  return {
    kernel,
    iommus: [{ id: 'dmar0', awBits: 39 }],
    devices: [
      // On q35's root bus: no slot or bus reset reaches them.
      { bdf: layout.edu[0], model: 'edu', group: layout.groups[0], busReset: false },
      { bdf: layout.edu[1], model: 'edu', group: layout.groups[1], busReset: false },
      // As mtty: DMA logging taken (its log ops do nothing; the nic model logs for real and reports
      // nothing without DMA), and a resume whose data does not load stays RESUMING.
      {
        uuid: layout.mdev, model: 'nic', group: layout.groups[2],
        migration: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: true, resumeFailure: 'resuming' },
      },
    ],
  };
}
