// The demo's guest with --kvm: @vmmkit/accel-kvm's nic-ring guest on vCPU 0 of a KVM VM whose
// NICs are simulated beside it (HybridHost). It finds NIC A (the first NIC on its PCI bus)
// through config space, places its BARs, receives into a ring in its RAM, checks every packet
// and writes pseudo-random pages of an arena, reporting through port I/O. It polls the ring (the
// guest can also wait for MSI-X interrupts; halting until one comes, it would write few pages
// while the migration keeps the main thread, and so the NICs' time, busy).

import { accessSync, constants } from 'node:fs';
import type { Vmm } from '@vmmkit/core';
import {
  NIC_RING_GUEST, NIC_RING_PARAMS_SIZE, enterFlatProtectedMode, nicRingGuestError, nicRingParamBlock,
  type KvmAccel, type NicRingGuestParams,
} from '@vmmkit/accel-kvm';
import type { SimHost } from '@vmmkit/sim';
import { formatBytes, formatCount } from '../report/format.js';
import type { DemoActivity } from './demo-activity.js';

/** Why the demo cannot run its guest on KVM here, or undefined when it can. */
export function kvmUnavailable(): string | undefined {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch (e) {
    return `/dev/kvm is not usable here (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  }
}

const ENTRY = 0x1000n;
const PARAMS = 0x800n;
const STACK = 0x800n;
/**
 * The guest's layout and NIC A's traffic: a 4 MiB arena, a ring of 128 slots of 256 bytes at
 * 6 MiB, 1000 packets/s. On kvm_pvm (KVM on a software hypervisor) a guest makes only some 30,000
 * to 70,000 memory accesses a second, so the traffic is what its packet checks keep up with.
 */
export const DEMO_KVM_GUEST: NicRingGuestParams = {
  arena: 0x10_0000, arenaPages: 1024, seed: 0x5eed_0001, ring: 0x60_0000, slots: 128, packetSize: 256, rate: 1000,
  bar0: 0xe000_0000, bar2: 0xe010_0000, reportMask: 0xfff, nicSeed: 0xdec0de, writesPerPoll: 32,
};
// The layout ends below 8 MiB: the demo's smallest guest (--memory 32) has 24 MiB below 4 GiB.

/** What the guest reported on one side. */
export class KvmGuestReports {
  readonly progress: number[] = [];
  readonly checked: number[] = [];
  readonly errors: number[] = [];
  #waiters: (() => void)[] = [];

  constructor(accel: KvmAccel) {
    const ports: Record<number, number[]> = { 0x10: this.progress, 0x13: this.checked, 0x14: this.errors };
    accel.io.addPorts(0x10, 5, (a) => {
      const list = ports[Number(a.addr)];
      if (!a.write || !list) return;
      list.push(new DataView(a.data.buffer, a.data.byteOffset, 4).getUint32(0, true));
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  /** What went wrong, in words, if the guest reported an error. */
  get error(): string | undefined {
    const e = this.errors[0];
    if (e === undefined) return undefined;
    const { what, seq } = nicRingGuestError(e);
    return `the guest found a bad ${what} at packet ${seq}`;
  }

  /** Resolves at the next report, or after `ms`. */
  next(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }
}

/** The simulated NICs' virtual time, 1 ms per millisecond while it runs. */
function clock(sim: SimHost): { start(): void; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  return {
    start: () => { timer ??= setInterval(() => sim.advance(1), 1); },
    stop: () => { clearInterval(timer); timer = undefined; },
  };
}

/** The guest on the source: loaded and started by `start`. */
export function kvmActivity(vmm: Vmm, accel: KvmAccel, sim: SimHost): DemoActivity & { readonly reports: KvmGuestReports } {
  const reports = new KvmGuestReports(accel);
  const time = clock(sim);
  const g = DEMO_KVM_GUEST;
  return {
    reports,
    async start() {
      vmm.memory.view(ENTRY, NIC_RING_GUEST.byteLength).set(NIC_RING_GUEST);
      vmm.memory.view(PARAMS, NIC_RING_PARAMS_SIZE).set(nicRingParamBlock(g));
      enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, ENTRY, { rbx: PARAMS, rsp: STACK });
      time.start();
      vmm.resume('the guest starts');
    },
    stop: () => time.stop(),
    workingSetBytes: g.arenaPages * 4096 + g.slots * g.packetSize,
    description: `a bare-metal guest on KVM (vCPU 0) finds NIC A through PCI config space (ports 0xcf8/0xcfc), places its BARs, `
      + `receives ${formatCount(g.rate)} packets/s of ${formatBytes(g.packetSize)} into a ring in its RAM and checks each, `
      + `and writes pseudo-random pages of a ${formatBytes(g.arenaPages * 4096)} arena; NIC B stays idle`,
  };
}

/**
 * After the migration: let the destination's NICs' time run until its guest reports packets
 * checked (or `ms` pass), and say what it did: it carried on when the first packets it checked
 * there come after the last it checked on the source.
 */
export async function destinationCarriesOn(source: KvmGuestReports, destination: KvmGuestReports, sim: SimHost, ms: number): Promise<{ checked?: number; lastOnSource: number; error?: string; ok: boolean }> {
  const lastOnSource = source.checked.at(-1) ?? 0;
  const time = clock(sim);
  time.start();
  try {
    const deadline = Date.now() + ms;
    while (destination.checked.length === 0 && destination.errors.length === 0 && Date.now() < deadline) await destination.next(deadline - Date.now());
  } finally {
    time.stop();
  }
  const checked = destination.checked[0];
  const error = destination.error;
  return { checked, lastOnSource, error, ok: error === undefined && checked !== undefined && checked > lastOnSource };
}
