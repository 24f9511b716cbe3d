// The host kernel a command works on: this machine's (LinuxHost) or vmmkit's demo machine on the
// simulated host (--sim), whose description the CLI keeps to know which devices are NICs.

import { LinuxHost, type HostKernel } from '@vmmkit/core';
import { SimHost, simMachine, type SimHostConfig } from '@vmmkit/sim';

/** A host, and on the simulated host the machine it models. */
export interface CliHost {
  readonly kernel: HostKernel;
  /** `linux` or `sim`, for reports. */
  readonly kind: 'linux' | 'sim';
  /** Set on the simulated host. */
  readonly sim?: { readonly host: SimHost; readonly machine: SimHostConfig };
}

/** This machine's kernel, or (with `sim`) a new simulated demo machine. */
export function openHost(sim: boolean): CliHost {
  if (!sim) return { kernel: new LinuxHost(), kind: 'linux' };
  const machine = simMachine();
  const host = new SimHost(machine);
  return { kernel: host, kind: 'sim', sim: { host, machine } };
}
