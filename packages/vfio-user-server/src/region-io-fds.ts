// DEVICE_GET_REGION_IO_FDS for a served model: an eventfd per register the model declares
// ioeventfd-capable (SimPciModel.ioeventfds), handed to the client as an ioeventfd sub-region and
// watched here, so a guest write the client's KVM turns into a signal reaches the model's
// barWrite without a message (libvfio-user's vfu_create_ioeventfd, seen from the model).

import { ArgumentError, HostError, type HostKernel } from '@vmmkit/core';
import { EFD_CLOEXEC, EFD_NONBLOCK } from '@vmmkit/core/uapi';
import {
  VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, encodeRegionIoFdsReply, type VfioUserIoFdSubRegion, type VfioUserRegionIoFdsRequest,
} from '@vmmkit/core/vfio-user';
import type { SimIoeventfdRegister, SimPciModel } from '@vmmkit/sim';
import { closeQuietly } from './dma-windows.js';
import { refuse } from './request-error.js';

/** One register's eventfd and the watch on it. */
interface Watched {
  readonly fd: number;
  stop(): void;
}

/**
 * The ioeventfds of one connection. They are made when the client first asks for a region's
 * (asking again sends the same ones), stay through device resets (the client's KVM keeps them
 * registered), and are closed when the client leaves: a departed client's eventfds must not
 * ring the device for the next one.
 */
export class RegionIoFds {
  readonly #regions = new Map<number, Watched[]>();
  /** Signals heard, and reads or model writes that failed (logged): for tests and the log. */
  signals = 0;
  failures = 0;

  constructor(private readonly host: HostKernel, private readonly model: SimPciModel, private readonly log: (line: string) => void) {}

  /**
   * The reply to GET_REGION_IO_FDS for a region that exists: the model's registers in it as
   * ioeventfd sub-regions and their eventfds (which stay this object's: the transport sends
   * duplicates). None when the model declares none there, or when the host cannot watch an fd.
   * A client argsz too small for the sub-regions gets the count and the argsz needed, and no fds.
   * @throws VfioUserRequestError E2BIG when the fds exceed what the client takes in one message.
   */
  answer(request: VfioUserRegionIoFdsRequest, maxMsgFds: number): { payload: Uint8Array; fds: number[] } {
    const registers = this.host.watch ? (this.model.ioeventfds ?? []).filter((r) => r.bar === request.index) : [];
    const subRegions: VfioUserIoFdSubRegion[] = registers.map((r, i) => ({
      type: 'ioeventfd', offset: BigInt(r.offset), size: BigInt(r.size), fdIndex: i,
      flags: r.datamatch === undefined ? 0 : VFIO_USER_IOEVENTFD_FLAG_DATAMATCH,
      ...(r.datamatch === undefined ? {} : { datamatch: r.datamatch }),
    }));
    const { payload, complete } = encodeRegionIoFdsReply(request.index, subRegions, request.argsz);
    if (!complete || !registers.length) return { payload, fds: [] };
    if (registers.length > maxMsgFds) refuse('E2BIG', `region ${request.index} has ${registers.length} ioeventfds, the client takes ${maxMsgFds} fds per message`);
    return { payload, fds: this.#eventfds(request.index, registers).map((w) => w.fd) };
  }

  /** Stop watching and close every eventfd (the client left). */
  dispose(): void {
    for (const watched of this.#regions.values()) release(this.host, watched);
    this.#regions.clear();
  }

  #eventfds(index: number, registers: readonly SimIoeventfdRegister[]): Watched[] {
    const existing = this.#regions.get(index);
    if (existing) return existing;
    const made: Watched[] = [];
    try {
      for (const register of registers) made.push(this.#watch(register));
    } catch (e) {
      release(this.host, made);
      throw e;
    }
    this.#regions.set(index, made);
    return made;
  }

  #watch(register: SimIoeventfdRegister): Watched {
    const fd = this.host.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    try {
      const buf = new Uint8Array(8);
      return { fd, stop: this.host.watch!(fd, () => this.#signalled(fd, buf, register)) };
    } catch (e) {
      closeQuietly(this.host, fd);
      throw e;
    }
  }

  /** Drain the count (signals coalesce into one write) and write the register. */
  #signalled(fd: number, buf: Uint8Array, r: SimIoeventfdRegister): void {
    try {
      if (this.host.read(fd, buf) !== 8) return;
    } catch (e) {
      if (HostError.is(e, 'EAGAIN')) return;
      this.failures++;
      this.log(`reading the ioeventfd of BAR${r.bar} at 0x${r.offset.toString(16)} failed: ${String(e)}`);
      return;
    }
    this.signals++;
    try {
      this.model.barWrite(r.bar, r.offset, r.size, r.datamatch ?? 0n);
    } catch (e) {
      // The event loop must not throw; a model fault is the model's, logged like a refused write.
      this.failures++;
      this.log(`the model's write of BAR${r.bar} at 0x${r.offset.toString(16)} through its ioeventfd failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    }
  }
}

function release(host: HostKernel, watched: readonly Watched[]): void {
  for (const w of watched) {
    try {
      w.stop();
    } catch {
      // Stopping a watch is bookkeeping in the event loop; whatever it says, the fd must go.
    }
    closeQuietly(host, w.fd);
  }
}

/**
 * Check a model's ioeventfd registers against its BARs: an existing memory or I/O BAR, a width
 * of 1, 2, 4 or 8 at an aligned offset inside it, outside its mmap areas, at most one per place.
 * @throws ArgumentError naming the model and the register.
 */
export function checkIoeventfdRegisters(model: SimPciModel): void {
  const seen = new Set<string>();
  for (const r of model.ioeventfds ?? []) {
    const where = `${model.kind}: ioeventfd register BAR${r.bar} at 0x${r.offset.toString(16)}`;
    const bar = model.bars.find((b) => b.index === r.bar);
    if (!bar) throw new ArgumentError(`${where}: the model has no BAR${r.bar}`, 'ioeventfds');
    if (![1, 2, 4, 8].includes(r.size) || r.offset < 0 || r.offset % r.size) throw new ArgumentError(`${where}: width ${r.size} at an unaligned or negative offset`, 'ioeventfds');
    const start = BigInt(r.offset);
    const end = start + BigInt(r.size);
    if (end > bar.size) throw new ArgumentError(`${where}: outside the BAR's ${bar.size} bytes`, 'ioeventfds');
    if (bar.mmapAreas?.some((a) => start < a.offset + a.size && a.offset < end)) throw new ArgumentError(`${where}: inside an mmap area, whose writes never reach the model`, 'ioeventfds');
    if (r.datamatch !== undefined && (r.datamatch < 0n || r.datamatch >= 1n << BigInt(8 * r.size))) throw new ArgumentError(`${where}: datamatch does not fit ${r.size} bytes`, 'ioeventfds');
    const key = `${r.bar}:${r.offset}:${r.datamatch ?? ''}`;
    if (seen.has(key)) throw new ArgumentError(`${where}: declared twice`, 'ioeventfds');
    seen.add(key);
  }
}
