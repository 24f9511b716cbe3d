// A VM on KVM with the simulated nic assigned through vfio-pci (HybridHost: guest RAM, KVM and
// the vCPUs real, the nic and its IOMMU simulated, its DMA into the real guest RAM), the
// nic-ring guest loaded, and what the guest reports.

import 'reflect-metadata';
import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { migrationPlugin } from '@vmmkit/migration';
import { HybridHost, NIC_A, simMachine } from '@vmmkit/sim';
import { enterFlatProtectedMode, kvmPlugin, NIC_RING_GUEST, NIC_RING_PARAMS_SIZE, nicRingParamBlock, type IoBus, type KvmAccel, type NicRingGuestParams } from '../src/index.js';

export const NIC_RAM_BYTES = 8n << 20n;
export const NIC_GUEST_CODE = 0x1000n;
export const NIC_GUEST_PARAMS = 0x800n;
export const NIC_GUEST_STACK = 0x800n;

/** The guest's parameters in the tests: arena at 1 MiB, the ring at 4 MiB, BARs below 4 GiB. */
export const NIC_GUEST: NicRingGuestParams = {
  arena: 0x10_0000, arenaPages: 64, seed: 0x5eed, ring: 0x40_0000, slots: 64, packetSize: 256, rate: 20_000,
  bar0: 0xe000_0000, bar2: 0xe010_0000, reportMask: 0x3ff, nicSeed: 0xc0ffee, writesPerPoll: 64,
};

/** What the nic-ring guest said, port by port. */
export class NicGuestReports {
  readonly hello: number[] = [];
  readonly progress: number[] = [];
  readonly checked: number[] = [];
  readonly errors: number[] = [];
  #waiters: { test: () => boolean; resolve: () => void }[] = [];

  attach(io: IoBus): void {
    const ports: Record<number, number[]> = { 0x10: this.progress, 0x11: this.hello, 0x13: this.checked, 0x14: this.errors };
    io.addPorts(0x10, 5, (a) => {
      const list = ports[Number(a.addr)];
      if (!a.write || !list) return;
      list.push(new DataView(a.data.buffer, a.data.byteOffset, 4).getUint32(0, true));
      for (const w of [...this.#waiters]) if (w.test()) { this.#waiters.splice(this.#waiters.indexOf(w), 1); w.resolve(); }
    });
  }

  /** Resolves when `test` holds after a report (or rejects after `timeoutMs`, naming the guest's state). */
  until(test: () => boolean, timeoutMs = 30_000): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the guest did not report in time (progress ${this.progress.at(-1)}, checked ${this.checked.at(-1)}, errors ${this.errors})`)), timeoutMs);
      this.#waiters.push({ test, resolve: () => { clearTimeout(t); resolve(); } });
    });
  }
}

/** Virtual time for the simulated devices while the test runs: 1 ms per real millisecond. */
export function simClock(host: HybridHost): () => void {
  const timer = setInterval(() => host.sim.advance(1), 1);
  return () => clearInterval(timer);
}

/** The VM, paused, with `kvm0`, the nic as `nic0` (vfio-pci on `backend`), and reports attached. */
export async function nicVmm(o: { backend?: 'legacy' | 'iommufd'; incoming?: boolean; host?: HybridHost; beforeDevices?: (vmm: Vmm) => void } = {}) {
  const host = o.host ?? HybridHost.create(simMachine({ edus: 0, nics: 1 }));
  const vmm = await Vmm.create({
    host, plugins: [kvmPlugin(), legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), migrationPlugin()],
    memory: [{ gpa: 0n, size: NIC_RAM_BYTES, name: 'low' }], incoming: o.incoming,
  });
  try {
    vmm.pause('setup');
    o.beforeDevices?.(vmm);
    const accel = (await vmm.addDevice('kvm,id=kvm0')) as KvmAccel;
    if (o.backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
    const nic = (await vmm.addDevice(`vfio-pci,id=nic0,host=${NIC_A}${o.backend === 'iommufd' ? ',iommufd=iommufd0' : ''}`)) as VfioPciDevice;
    const reports = new NicGuestReports();
    reports.attach(accel.io);
    return { host, vmm, accel, nic, reports };
  } catch (e) {
    await vmm.close();
    throw e;
  }
}

/** Load the guest and its parameters and point vCPU 0 at it. */
export function loadNicGuest(vmm: Vmm, accel: KvmAccel, params: NicRingGuestParams = NIC_GUEST): void {
  vmm.memory.view(NIC_GUEST_CODE, NIC_RING_GUEST.byteLength).set(NIC_RING_GUEST);
  vmm.memory.view(NIC_GUEST_PARAMS, NIC_RING_PARAMS_SIZE).set(nicRingParamBlock(params));
  enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, NIC_GUEST_CODE, { rbx: NIC_GUEST_PARAMS, rsp: NIC_GUEST_STACK });
}
