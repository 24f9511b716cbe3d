// Composing the VM of `run` and `migrate` from the command line: every plugin vmmkit ships, the
// guest RAM of -m, then -object and -device in the order given (as QEMU creates them), and with
// --kvm the kvm device and its guest. Guest RAM comes from memfds when a vfio-user device is given,
// so that its server maps the RAM (QEMU asks for -object memory-backend-memfd,share=on instead).

import { ConfigError, Vmm, parseDescription, type Description } from '@vmmkit/core';
import { kvmPlugin } from '@vmmkit/accel-kvm';
import { allPlugins } from '../../guest/demo-vm.js';
import type { VmArgs } from '../args/command-line.js';
import { UsageError } from '../args/usage-error.js';
import type { CliHost } from './cli-host.js';
import { guestRamLayout } from './guest-ram-layout.js';
import { addKvmGuest } from './kvm-guest.js';

/**
 * Create the VM. `incoming` creates it paused, waiting for a migration.
 * @throws UsageError when a -object or -device description is wrong (a ConfigError: it names
 *   the option and the value); the device's own error when it cannot be realized.
 */
export async function composeVm(host: CliHost, args: VmArgs, incoming = false): Promise<Vmm> {
  const vmm = await Vmm.create({
    host: host.kernel,
    plugins: args.kvm ? [...allPlugins(), kvmPlugin()] : allPlugins(),
    memory: guestRamLayout(args.ramSize),
    memoryBacking: args.devices.some(isVfioUser) ? 'memfd' : 'anonymous',
    name: args.name,
    incoming,
  });
  try {
    for (const desc of args.objects) await asUsage(async () => vmm.addObject(desc));
    for (const desc of args.devices) await asUsage(() => vmm.addDevice(desc));
    if (args.kvm) await addKvmGuest(vmm, incoming);
    return vmm;
  } catch (e) {
    await vmm.close().catch(() => undefined); // the first error is the one to report
    throw e;
  }
}

/** A -device vfio-user-pci (a description that does not parse is reported when it is added). */
function isVfioUser(desc: Description): boolean {
  try {
    return parseDescription(desc, '-device', 'driver').type === 'vfio-user-pci';
  } catch {
    return false;
  }
}

// A ConfigError from a description is a mistake on the command line: exit status 2, not 1.
async function asUsage<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw e instanceof ConfigError ? new UsageError(`vmmkit: ${e.message}`, e.option, e.value) : e;
  }
}
