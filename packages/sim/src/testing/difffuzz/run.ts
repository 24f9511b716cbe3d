// One sequence running on one host: its user buffers, the fds it opened and the ids it was given
// (resolving the references of later steps), and the labels results are normalized with. Every
// sequence starts from nothing and dispose() closes and unmaps all it made, so a real kernel is
// left as it was found.

import { basename } from 'node:path';
import { ArgumentError, type HostKernel, type HostMapping } from '@vmmkit/core';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, VFIO_DEVICE_RESET } from '@vmmkit/core/uapi';
import type { BufName, Ptr, Ref } from './model.js';

/** A device of the fuzzed machine, as one host shows it. */
export interface FuzzDevice {
  /** BDF or mdev UUID (VFIO_GROUP_GET_DEVICE_FD's name). */
  readonly name: string;
  readonly mdev: boolean;
  /** Its IOMMU group number (/dev/vfio/<group>). */
  readonly group: number;
  /** Its cdev, /dev/vfio/devices/vfio<N>. */
  readonly cdev: string;
}

/** The devices sequences use, addressed by index: the two edu functions and the mtty mdev. */
export interface FuzzMachine {
  readonly devices: readonly FuzzDevice[];
}

/** Find `names` (BDFs, then mdev UUIDs) in a host's sysfs, as a program would. */
export function discoverMachine(host: HostKernel, names: readonly string[]): FuzzMachine {
  return {
    devices: names.map((name) => {
      const mdev = !name.includes(':');
      const dir = mdev ? `/sys/bus/mdev/devices/${name}` : `/sys/bus/pci/devices/${name}`;
      const cdev = host.readdir(`${dir}/vfio-dev`).find((n) => /^vfio\d+$/.test(n));
      if (!cdev) throw new ArgumentError(`difffuzz: ${name} has no VFIO cdev under ${dir}/vfio-dev`);
      return { name, mdev, group: Number(basename(host.readlink(`${dir}/iommu_group`))), cdev: `/dev/vfio/devices/${cdev}` };
    }),
  };
}

/** An fd no process has open: what a reference to a closed or never-made fd becomes. */
export const NO_FD = 1_000_000;
/** An id no iommufd hands out (xa_limit_31b): what a reference to a failed step becomes. */
export const NO_ID = 0x7fff_fff0;

const MB = 1n << 20n;
/** The sizes of the buffers every sequence gets. */
export const BUFFERS: Readonly<Record<BufName, bigint>> = {
  big: 8n * MB, // 2 MiB aligned: automatic IOVA alignment is the same on every host
  odd: 5000n, // not a page multiple: the kernel maps two whole pages
  ro: 8192n, // PROT_READ: pinning it for write is EFAULT
  scratch: 64n << 10n, // arrays and bitmaps the calls read and write
};

export class Run {
  readonly #produced = new Map<number, Map<string, number>>();
  readonly #labels = new Map<string, string>();
  readonly #open: number[] = [];
  readonly #closed = new Set<number>();
  readonly #reset = new Set<number>();
  readonly #maps: HostMapping[] = [];
  readonly #bufs = new Map<BufName, { addr: bigint; map: HostMapping; offset: number }>();
  /** The migration data this run read from saving data fds, in order: what a resume writes back. */
  readonly migData: Uint8Array[] = [];

  constructor(
    readonly host: HostKernel,
    readonly machine: FuzzMachine,
  ) {
    const map = (length: bigint, prot: number): HostMapping => {
      const m = host.mmap(Number(length), prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
      this.#maps.push(m);
      return m;
    };
    const region = map(BUFFERS.big + 2n * MB, PROT_READ | PROT_WRITE);
    const big = (region.addr + 2n * MB - 1n) & ~(2n * MB - 1n);
    this.#bufs.set('big', { addr: big, map: region, offset: Number(big - region.addr) });
    for (const [name, prot] of [['odd', PROT_READ | PROT_WRITE], ['ro', PROT_READ], ['scratch', PROT_READ | PROT_WRITE]] as const) {
      const m = map(BUFFERS[name], prot);
      this.#bufs.set(name, { addr: m.addr, map: m, offset: 0 });
    }
  }

  /** The fd a reference names; a closed one or a failed step's is NO_FD. */
  fd(ref: Ref): number {
    if ('raw' in ref) return ref.raw;
    const fd = this.#produced.get(ref.step)?.get(ref.field);
    return fd === undefined || this.#closed.has(fd) ? NO_FD : fd;
  }

  /** The iommufd object id a reference names (NO_ID for a step that made none). */
  id(ref: Ref): number {
    if ('raw' in ref) return ref.raw;
    return this.#produced.get(ref.step)?.get(ref.field) ?? NO_ID;
  }

  /** The address a pointer names. */
  ptr(p: Ptr): bigint {
    return 'raw' in p ? p.raw : this.#bufs.get(p.buf)!.addr + p.off;
  }

  /** The bytes of a buffer (inside the user's own mapping). */
  bytes(buf: BufName, off: number, length: number): Uint8Array {
    const b = this.#bufs.get(buf)!;
    return b.map.view(b.offset + off, length);
  }

  /** Record an fd a step opened (`resetFirst`: a device fd to reset before closing it); returns its label. */
  madeFd(step: number, field: string, fd: number, resetFirst = false): string {
    this.#remember(step, field, fd);
    this.#closed.delete(fd);
    this.#open.push(fd);
    if (resetFirst) this.#reset.add(fd);
    else this.#reset.delete(fd);
    return `fd@${step}`;
  }

  /** Record an id a step was given; returns its label: the first step that was given the same number. */
  madeId(step: number, field: string, id: number): string {
    this.#remember(step, field, id);
    const key = String(id);
    if (!this.#labels.has(key)) this.#labels.set(key, `id@${step}.${field}`);
    return this.#labels.get(key)!;
  }

  /** The label of an id that is an output but no new handle (the pt_id an attach returns, say). */
  idLabel(id: number): string {
    return this.#labels.get(String(id)) ?? (id === NO_ID ? 'no-id' : `raw:${id}`);
  }

  /** Note an fd the sequence closed: references to it become NO_FD. */
  closedFd(fd: number): void {
    this.#closed.add(fd);
  }

  /**
   * Close every fd the sequence left open (newest first) and unmap its buffers; errors are ignored.
   * A migrating mdev is reset first: mtty keeps its migration state across a close, and the next
   * sequence must find it RUNNING.
   */
  dispose(): void {
    const ignore = (call: () => unknown): void => {
      try {
        call();
      } catch {
        // not bound, or already gone
      }
    };
    for (const fd of this.#open.reverse()) {
      if (this.#closed.has(fd)) continue;
      if (this.#reset.has(fd)) ignore(() => this.host.ioctl(fd, VFIO_DEVICE_RESET));
      ignore(() => this.host.close(fd));
      this.#closed.add(fd);
    }
    for (const m of this.#maps.splice(0)) m.unmap();
  }

  #remember(step: number, field: string, value: number): void {
    let out = this.#produced.get(step);
    if (!out) this.#produced.set(step, (out = new Map()));
    out.set(field, value);
  }
}
