// A KVM VM for the tests: guest RAM on the real host, the VM with its memslots, vCPUs running the
// pages guest, and what the guest reports on its ports. Tests that need it skip, saying why,
// where /dev/kvm cannot be opened.

import { accessSync, constants } from 'node:fs';
import { AddressSpace, GuestMemory, LinuxHost, type HostKernel } from '@vmmkit/core';
import { IoBus, KvmVcpu, KvmVm, enterFlatProtectedMode, setCpuid, vcpuCpuid, type KvmVmOptions, type VcpuStoppedError } from '../src/index.js';
import { PAGES_GUEST } from '../src/guests/pages-guest.js';

/** Why the KVM tests cannot run here, or undefined when they can. */
export const kvmMissing: string | undefined = (() => {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch (e) {
    return `/dev/kvm is not usable here (${(e as NodeJS.ErrnoException).code}): the KVM tests are skipped`;
  }
})();
if (kvmMissing) console.log(kvmMissing);

export const GUEST_CODE = 0x1000n;
export const ARENA = 0x10_0000n;
export const PORT_PROGRESS = 0x10;
export const PORT_HELLO = 0x11;
export const PORT_DONE = 0x12;

/** What the guest said, port by port. */
export class GuestReports {
  readonly hello: number[] = [];
  readonly progress: number[] = [];
  readonly done: number[] = [];
  #waiters: { test: () => boolean; resolve: () => void }[] = [];

  attach(bus: IoBus): void {
    const value = (d: Uint8Array) => new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true);
    bus.addPorts(PORT_PROGRESS, 3, (a) => {
      if (!a.write) return;
      const v = value(a.data);
      if (a.addr === BigInt(PORT_PROGRESS)) this.progress.push(v);
      else if (a.addr === BigInt(PORT_HELLO)) this.hello.push(v);
      else this.done.push(v);
      for (const w of [...this.#waiters]) if (w.test()) { this.#waiters.splice(this.#waiters.indexOf(w), 1); w.resolve(); }
    });
  }

  /** The last progress the guest reported. */
  get last(): number {
    return this.progress.at(-1) ?? 0;
  }

  /** Resolves when `test` holds after a report. */
  until(test: () => boolean, timeoutMs = 20_000): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the guest did not report in time (progress ${this.last})`)), timeoutMs);
      this.#waiters.push({ test, resolve: () => { clearTimeout(t); resolve(); } });
    });
  }
}

export interface RigOptions extends KvmVmOptions {
  readonly ramBytes?: bigint;
  readonly arenaPages?: number;
  readonly seed?: number;
  /** Writes before the guest halts; 0 = never. */
  readonly limit?: number;
  /** The guest reports progress every `reportMask + 1` writes. Default 0xff. */
  readonly reportMask?: number;
  readonly host?: HostKernel;
}

/** A VM with one vCPU at the guest's entry, parked. */
export async function kvmRig(o: RigOptions = {}) {
  const host = o.host ?? new LinuxHost();
  const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: o.ramBytes ?? 8n << 20n, name: 'low' }]);
  const as = new AddressSpace('system memory');
  await as.addSection({ kind: 'ram', start: 0n, size: memory.blocks[0]!.size, block: memory.blocks[0]!, offset: 0n, readonly: false });
  const vm = KvmVm.create(host, o);
  await vm.attach(as);
  const bus = new IoBus();
  const reports = new GuestReports();
  reports.attach(bus);
  const stopped: VcpuStoppedError[] = [];
  const vcpu = KvmVcpu.create(host, vm.fd, 0, vm.system.vcpuMmapSize(), bus, (e) => stopped.push(e));
  setCpuid(host, vcpu.fd, vcpuCpuid(vm.system.supportedCpuid(), 0));
  memory.view(GUEST_CODE, PAGES_GUEST.byteLength).set(PAGES_GUEST);
  const arenaPages = o.arenaPages ?? 1024;
  enterFlatProtectedMode(host, vcpu.fd, GUEST_CODE, {
    rax: BigInt(o.seed ?? 1), rcx: BigInt(arenaPages - 1), rdi: ARENA, rbp: BigInt(o.limit ?? 0), rsp: BigInt(o.reportMask ?? 0xff),
  });
  vcpu.start();
  return {
    host, memory, as, vm, bus, reports, vcpu, stopped,
    async close() {
      await vcpu.close();
      await vm.close();
      memory.free();
    },
  };
}
