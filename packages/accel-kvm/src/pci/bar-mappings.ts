// The parts of the guest's BARs that KVM serves without exits (QEMU's vfio region mmaps as RAM
// device memory regions, and its ioeventfds): each decoded BAR's mmapped memory
// (PciFunction.barMemory) as memslots at BAR base + offset, and each eventfd a function wants for
// BAR writes (barEventfds) as an ioeventfd there. It follows the decoded BAR windows: when the
// guest moves a BAR, turns decoding off, or the function leaves the bus, it removes exactly what
// it added for that BAR. Whatever it could not set up stays trapped (the exits reach barRead and
// barWrite as before), so a failure costs speed, never correctness: it is recorded in `errors`.

import type { PciFunction } from '@vmmkit/core';
import { KvmError } from '../kvm-errors.js';
import type { KvmEventfds } from '../kvm-eventfds.js';
import type { DeviceMemslot, KvmMemslots } from '../kvm-memslots.js';
import type { BarWindow } from './bar-windows.js';

/** What the host bridge tells whoever maps BARs (see PciHostBridge). */
export interface BarFollower {
  /** The BARs that decode now (of functions on the bus); map what is new, unmap what went. */
  follow(windows: readonly BarWindow[]): void;
  /** `fn` left the bus (it is unrealized next): unmap everything of it now. */
  forget(fn: PciFunction): void;
  /** Unmap everything. @throws the first failure, after trying all. */
  close(): void;
}

/** What is mapped for one BAR where the guest put it. */
export interface MappedBar {
  readonly fn: PciFunction;
  readonly bar: number;
  readonly space: 'mem' | 'io';
  readonly start: bigint;
  /** The memslots over the BAR's memory. */
  readonly memslots: readonly DeviceMemslot[];
  /** The guest addresses (ports for an I/O BAR) of its ioeventfds. */
  readonly ioeventfds: readonly bigint[];
  /** The BAR is not there any more: these are what KVM refused to remove (tried again at the next follow). */
  readonly stale: boolean;
}

interface Owned {
  readonly fn: PciFunction;
  readonly bar: number;
  readonly space: 'mem' | 'io';
  readonly start: bigint;
  readonly slots: DeviceMemslot[];
  readonly ioeventfds: { readonly addr: bigint; readonly remove: () => void }[];
  /** Set once the BAR is no longer there: what is left could not be removed yet (retried). */
  gone: boolean;
}

/**
 * KVM memslots and ioeventfds for the VM's BARs. Only memory at a process address
 * (`HostMapping.processAddress`: LinuxHost's mmaps, e.g. a vfio-user client's mapping of the
 * server's shared BAR memory) becomes a memslot: a simulated host's mappings are bookkeeping KVM
 * cannot map, so a simulated device's BARs (also on HybridHost, whose devices' mappings are the
 * simulated kernel's) stay trapped. HybridHost's real mappings, adopted by the simulated kernel,
 * do not say they are process memory today, so they stay trapped as well (see docs/kvm.md).
 * Parts that are not whole pages at a page-aligned guest address stay trapped too. Slots are
 * read-write (a BAR whose region is read-only should not offer barMemory).
 */
export class BarMappings implements BarFollower {
  /** What could not be mapped or unmapped, in order (each names the BAR, the function and the step). */
  readonly errors: KvmError[] = [];
  readonly #owned: Owned[] = [];

  constructor(private readonly memslots: KvmMemslots, private readonly eventfds: KvmEventfds, private readonly pageSize: number) {}

  /** What is mapped now (BARs that went but left something KVM would not remove included). */
  get mapped(): readonly MappedBar[] {
    return this.#owned.map((o) => ({ fn: o.fn, bar: o.bar, space: o.space, start: o.start, memslots: [...o.slots], ioeventfds: o.ioeventfds.map((i) => i.addr), stale: o.gone }));
  }

  follow(windows: readonly BarWindow[]): void {
    const same = (o: Owned, w: BarWindow): boolean => !o.gone && o.fn === w.fn && o.bar === w.bar && o.space === w.space && o.start === w.start;
    for (const o of [...this.#owned]) if (o.gone || !windows.some((w) => same(o, w))) this.#release(o);
    for (const w of windows) if (!this.#owned.some((o) => same(o, w))) this.#map(w);
  }

  forget(fn: PciFunction): void {
    for (const o of [...this.#owned]) if (o.fn === fn) this.#release(o);
  }

  close(): void {
    const before = this.errors.length;
    for (const o of [...this.#owned]) this.#release(o);
    const first = this.errors[before];
    if (first) throw first;
  }

  /** Map what `w`'s function offers for it; on a failure undo this BAR's part and record why. */
  #map(w: BarWindow): void {
    const o: Owned = { fn: w.fn, bar: w.bar, space: w.space, start: w.start, slots: [], ioeventfds: [], gone: false };
    const where = describe(w);
    try {
      if (w.space === 'mem') {
        for (const part of w.fn.barMemory?.(w.bar) ?? []) {
          if (!this.#mappable(w, part.offset, part.size, part.mapping.addr, part.mapping.length, part.mapping.processAddress)) continue;
          o.slots.push(this.memslots.addDeviceSlot(`BAR${w.bar} of '${w.fn.id}' +0x${part.offset.toString(16)}`, w.start + part.offset, part.size, part.mapping.addr));
        }
      }
      for (const e of w.fn.barEventfds?.(w.bar) ?? []) {
        const addr = w.start + e.offset;
        if (addr + BigInt(e.size) > w.end) continue; // not in the BAR: nothing to register
        o.ioeventfds.push({ addr, remove: this.eventfds.addIoeventfd({ addr, len: e.size, pio: w.space === 'io', datamatch: e.datamatch, fd: e.fd }) });
      }
    } catch (e) {
      this.errors.push(new KvmError(`map ${where}`, detail(e), { cause: e }));
      o.gone = true;
    }
    if (o.slots.length + o.ioeventfds.length === 0) return;
    this.#owned.push(o);
    if (o.gone) this.#release(o);
  }

  /** Whether a part of a BAR can be a memslot where the BAR is now. */
  #mappable(w: BarWindow, offset: bigint, size: bigint, hva: bigint, length: number, processAddress: boolean | undefined): boolean {
    const page = BigInt(this.pageSize);
    return processAddress === true && size > 0n && size <= BigInt(length) && w.start + offset + size <= w.end
      && (w.start + offset) % page === 0n && size % page === 0n && hva % page === 0n;
  }

  /** Remove what `o` holds; what KVM refuses stays in `o` (retried at the next follow), recorded. */
  #release(o: Owned): void {
    o.gone = true;
    for (const i of [...o.ioeventfds]) {
      if (this.#attempt(o, () => i.remove())) o.ioeventfds.splice(o.ioeventfds.indexOf(i), 1);
    }
    for (const m of [...o.slots]) {
      if (this.#attempt(o, () => this.memslots.removeDeviceSlot(m))) o.slots.splice(o.slots.indexOf(m), 1);
    }
    if (o.slots.length + o.ioeventfds.length === 0) this.#owned.splice(this.#owned.indexOf(o), 1);
  }

  #attempt(o: Owned, body: () => void): boolean {
    try {
      body();
      return true;
    } catch (e) {
      this.errors.push(new KvmError(`unmap ${describe(o)}`, detail(e), { cause: e }));
      return false;
    }
  }
}

/** What `e` says, without the "KVM: " its own message starts with when it is a KvmError. */
function detail(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/^KVM: /, '');
}

/** `BAR2 of 'nic0' at 0xe0100000` (`at port 0xc000` for an I/O BAR). */
function describe(b: { readonly fn: PciFunction; readonly bar: number; readonly space: 'mem' | 'io'; readonly start: bigint }): string {
  return `BAR${b.bar} of '${b.fn.id}' at ${b.space === 'io' ? 'port ' : ''}0x${b.start.toString(16)}`;
}
