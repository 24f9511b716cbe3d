// The KVM plugin: the `kvm` device type (`-device kvm,id=kvm0,vcpus=1,irqchip=auto,pit=auto`: the VM's
// accelerator, whose state migrates as a device's) and the RAM dirty-log provider that feeds
// the migration from KVM's dirty log.

import type { DependencyContainer } from 'tsyringe';
import { AddressSpace, ConfigError, VmmDeviceTypes, VmmInstance, type GuestMemory, type OptionSchema, type VmmDeviceType, type VmmPlugin } from '@vmmkit/core';
import { RamDirtyLogProviders, type RamDirtyLogProvider } from '@vmmkit/migration';
import { KvmAccel } from './kvm-accel.js';

const KVM_OPTIONS = {
  vcpus: { kind: 'uint', doc: 'vCPUs to create (default 1)' },
  irqchip: { kind: 'on-off-auto', doc: 'an in-kernel irqchip (default auto: where the host has one)' },
  pit: { kind: 'on-off-auto', doc: 'an in-kernel PIT (default auto: with the in-kernel irqchip, where the host has one)' },
} as const satisfies OptionSchema;

/** Most vCPUs the device accepts (the state format's vCPU field is 16 bits; KVM's limit is lower). */
const MAX_VCPUS = 1024;

/** KVM for the VM: `-device kvm,...`, and its dirty log for migration. */
export function kvmPlugin(): VmmPlugin {
  return {
    name: 'accel-kvm',
    register(container: DependencyContainer) {
      /** The VM's accelerator while one is realized. */
      let accel: KvmAccel | undefined;
      const type: VmmDeviceType<typeof KVM_OPTIONS> = {
        driver: 'kvm',
        options: KVM_OPTIONS,
        async realize(ctx) {
          if (accel) throw new ConfigError(`-device kvm: the VM has an accelerator already ('${accel.id}')`, 'driver', 'kvm');
          const vcpus = ctx.options.vcpus ?? 1;
          if (vcpus < 1 || vcpus > MAX_VCPUS) throw new ConfigError(`-device kvm: vcpus=${vcpus} is outside 1..${MAX_VCPUS}`, 'vcpus', String(vcpus));
          const vmm = container.resolve(VmmInstance);
          let created: KvmAccel | undefined;
          created = await KvmAccel.create(ctx.id, {
            host: ctx.host,
            addressSpace: container.resolve(AddressSpace),
            pciBus: vmm.pciBus,
            events: ctx.events,
            get running() { return vmm.running; },
            pause: (reason) => vmm.pause(reason),
            released: () => { if (created && accel === created) accel = undefined; },
          }, { vcpus, irqchip: ctx.options.irqchip, pit: ctx.options.pit });
          accel = created;
          return created;
        },
      };
      container.register(VmmDeviceTypes, { useValue: type as unknown as VmmDeviceType });
      const provider: RamDirtyLogProvider = {
        name: 'kvm-dirty-log',
        start: (memory: GuestMemory) => accel?.vm.dirtyLog.start(memory),
        sync: (memory: GuestMemory) => accel?.vm.dirtyLog.sync(memory) ?? 0,
        stop: (memory: GuestMemory) => accel?.vm.dirtyLog.stop(memory),
        // The VM paused: its vCPUs leave the guest, finishing the device access in flight.
        quiesce: () => accel?.quiesced() ?? Promise.resolve(),
      };
      container.register(RamDirtyLogProviders, { useValue: provider });
    },
  };
}
