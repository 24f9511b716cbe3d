// MSI delivery on KVM, measured against the path it replaces in the same run (skipped, saying why,
// without /dev/kvm): a real eventfd's signal reaching the guest's local APIC through an irqfd on an
// MSI route (KvmMsiRouter: KVM injects in the signalling write) against the VMM's own path for the
// same eventfd (the event loop hears it readable, reads it, and injects with KVM_SIGNAL_MSI, as
// vfio-pci's eventfd reader and the kvm device's onMessageInterrupt listener do). Each signal of
// the baseline is awaited until injected; the subject's are injected before `write` returns.

import { AddressSpace, GuestMemory, HostError, LinuxHost } from '@vmmkit/core';
import { EFD_CLOEXEC, EFD_NONBLOCK, KVM_GET_LAPIC, KVM_SET_LAPIC, kvm_lapic_state } from '@vmmkit/core/uapi';
import { IoBus, KvmVcpu, KvmVm, setCpuid, vcpuCpuid } from '@vmmkit/accel-kvm';
import { compareAsync, kvmMissing, type Benchmark, type Row } from './harness.js';

const SIGNALS = 2000;
const VECTOR = 0x41;
const MESSAGE = { address: 0xfee0_0000n, data: VECTOR };

async function msiDelivery(): Promise<Row> {
  const host = new LinuxHost();
  const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: 2n << 20n, name: 'ram' }]);
  const as = new AddressSpace('system memory');
  await as.addSection({ kind: 'ram', start: 0n, size: memory.blocks[0]!.size, block: memory.blocks[0]!, offset: 0n, readonly: false });
  const vm = KvmVm.create(host, { irqchip: 'on' });
  await vm.attach(as);
  const vcpu = KvmVcpu.create(host, vm.fd, 0, vm.system.vcpuMmapSize(), new IoBus(), () => {});
  setCpuid(host, vcpu.fd, vcpuCpuid(vm.system.supportedCpuid(), 0));
  const irqfd = host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const vmmFd = host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const one = new Uint8Array(8);
  one[0] = 1;
  const buf = new Uint8Array(8);
  let delivered: (() => void) | undefined;
  const unwatch = host.watch(vmmFd, () => {
    try {
      host.read(vmmFd, buf);
    } catch (e) {
      if (HostError.is(e, 'EAGAIN')) return;
      throw e;
    }
    vm.signalMsi(MESSAGE.address, MESSAGE.data);
    delivered?.();
  });
  try {
    // The local APIC software-enabled, so that it takes the fixed interrupts.
    const lapic = kvm_lapic_state.encode();
    host.ioctl(vcpu.fd, KVM_GET_LAPIC, lapic);
    new DataView(lapic.buffer).setUint32(0xf0, 0x1ff, true);
    host.ioctl(vcpu.fd, KVM_SET_LAPIC, lapic);
    const route = vm.msiRouter!.connect(irqfd, MESSAGE);
    const result = await compareAsync({
      trials: 9,
      subject: async () => {
        for (let i = 0; i < SIGNALS; i++) host.write(irqfd, one);
      },
      baseline: async () => {
        for (let i = 0; i < SIGNALS; i++) {
          const done = new Promise<void>((resolve) => (delivered = resolve));
          host.write(vmmFd, one);
          await done;
        }
      },
    });
    // Both paths did reach the APIC (its IRR holds the vector; KVM consumed the irqfd's count).
    host.ioctl(vcpu.fd, KVM_GET_LAPIC, lapic);
    const irr = new DataView(lapic.buffer).getUint32(0x200 + (VECTOR >> 5) * 0x10, true);
    if (!((irr >>> (VECTOR & 31)) & 1)) throw new Error('the vector never reached the local APIC');
    route.disconnect();
    return {
      benchmark: 'KVM MSI delivery', case: `${SIGNALS} eventfd signals to the local APIC, through an irqfd`, ratio: result.ratio,
      baseline: 'the VMM reading the eventfd and KVM_SIGNAL_MSI',
      note: `irqfd ${Math.round(SIGNALS / (result.subjectMs / 1000))}/s, VMM ${Math.round(SIGNALS / (result.baselineMs / 1000))}/s`,
    };
  } finally {
    unwatch();
    await vcpu.close();
    await vm.close();
    host.close(irqfd);
    host.close(vmmFd);
    memory.free();
  }
}

export const kvmMsiBenchmark: Benchmark = {
  name: 'kvm-msi',
  async run(): Promise<Row[]> {
    const missing = kvmMissing();
    if (missing) {
      process.stderr.write(`kvm-msi: skipped (${missing})\n`);
      return [];
    }
    return [await msiDelivery()];
  },
};
