// HybridHost: the real Linux host for the VMM's memory, KVM and files, and the simulated host
// for the VFIO devices. A VM whose vCPUs run on KVM (which needs guest RAM to be real memory)
// reaches simulated devices this way: every real mapping of the VMM is adopted by the simulated
// kernel at the same address, so a DMA map of guest RAM and the devices' DMA land in the very
// bytes KVM maps.

import { ArgumentError, LinuxHost, type HostKernel, type HostMapping } from '@vmmkit/core';
import type { SimHostConfig } from './config.js';
import { SimHost } from './sim-host.js';

/**
 * The simulated process beside the real one: fds from 2^30 (no real fd reaches it: Linux caps
 * RLIMIT_NOFILE at fs.nr_open, 2^20 by default) and mappings from 2^47, past the user address
 * space where the real kernel places the mappings the simulated one adopts.
 */
export const HYBRID_SIM_FIRST_FD = 1 << 30;
export const HYBRID_SIM_MAPPING_BASE = 1n << 47n;

/** Paths the real host serves; everything else is the simulated machine's (/dev/vfio, /sys...). */
const REAL_PATHS = ['/dev/kvm'];

export class HybridHost implements HostKernel {
  readonly pageSize: number;

  private constructor(
    /** The real host: memory, KVM, memfds. */
    readonly real: HostKernel,
    /** The simulated host: VFIO, IOMMUFD, the devices, eventfds. */
    readonly sim: SimHost,
  ) {
    this.pageSize = real.pageSize;
  }

  /**
   * The machine `config` simulated beside the real host (LinuxHost by default).
   * @throws ArgumentError when the page sizes differ (the simulated kernel's are 4 KiB).
   */
  static create(config: SimHostConfig = {}, real: HostKernel = new LinuxHost()): HybridHost {
    const sim = new SimHost({ ...config, process: { firstFd: HYBRID_SIM_FIRST_FD, mappingBase: HYBRID_SIM_MAPPING_BASE } });
    if (sim.pageSize !== real.pageSize) {
      throw new ArgumentError(`HybridHost: the real host's pages are ${real.pageSize} bytes, the simulated kernel's ${sim.pageSize}`);
    }
    return new HybridHost(real, sim);
  }

  open(path: string, flags: number): number {
    return this.#byPath(path).open(path, flags);
  }

  close(fd: number): void {
    this.#byFd(fd).close(fd);
  }

  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number {
    return this.#byFd(fd).ioctl(fd, request, arg);
  }

  read(fd: number, buf: Uint8Array): number {
    return this.#byFd(fd).read(fd, buf);
  }

  write(fd: number, buf: Uint8Array): number {
    return this.#byFd(fd).write(fd, buf);
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#byFd(fd).pread(fd, buf, offset);
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#byFd(fd).pwrite(fd, buf, offset);
  }

  /** A simulated fd's mapping is the simulated kernel's; real memory is mapped and then adopted. */
  mmap(length: number, prot: number, flags: number, fd: number, offset: bigint): HostMapping {
    if (fd >= HYBRID_SIM_FIRST_FD) return this.sim.mmap(length, prot, flags, fd, offset);
    const real = this.real.mmap(length, prot, flags, fd, offset);
    return this.#adopted(real, () => this.sim.adoptMapping(real, prot));
  }

  /** The simulated kernel's: VFIO's interrupts are signalled through it. (A KVM irqfd needs a real one.) */
  eventfd(initval: number, flags: number): number {
    return this.sim.eventfd(initval, flags);
  }

  dup(fd: number): number {
    return this.#byFd(fd).dup(fd);
  }

  /** Real: guest RAM shared by file is real memory. */
  memfdCreate(name: string, flags: number): number {
    return this.real.memfdCreate(name, flags);
  }

  ftruncate(fd: number, length: bigint): void {
    this.#byFd(fd).ftruncate(fd, length);
  }

  readlink(path: string): string {
    const fd = /^\/proc\/self\/fd\/(\d+)$/.exec(path);
    if (fd) return this.#byFd(Number(fd[1])).readlink(path);
    return this.#byPath(path).readlink(path);
  }

  readdir(path: string): string[] {
    return this.#byPath(path).readdir(path);
  }

  exists(path: string): boolean {
    return this.#byPath(path).exists(path);
  }

  mapMemory(bytes: Uint8Array): HostMapping {
    if (!this.real.mapMemory) return this.sim.mapMemory(bytes);
    const real = this.real.mapMemory(bytes);
    return this.#adopted(real, () => this.sim.adoptMemory(real));
  }

  watch(fd: number, onReadable: () => void): () => void {
    const host = this.#byFd(fd);
    if (!host.watch) throw new ArgumentError(`HybridHost: fd ${fd}'s host cannot watch it`);
    return host.watch(fd, onReadable);
  }

  #byFd(fd: number): HostKernel {
    return fd >= HYBRID_SIM_FIRST_FD ? this.sim : this.real;
  }

  #byPath(path: string): HostKernel {
    return REAL_PATHS.some((p) => path === p || path.startsWith(`${p}/`)) ? this.real : this.sim;
  }

  /** `mapping`, adopted by the simulated kernel at its address for as long as it is mapped. */
  #adopted(mapping: HostMapping, adopt: () => HostMapping): HostMapping {
    let adoption: HostMapping;
    try {
      adoption = adopt();
    } catch (e) {
      mapping.unmap();
      throw e;
    }
    return {
      addr: mapping.addr,
      length: mapping.length,
      get bytes() { return mapping.bytes; },
      view: (offset, length) => mapping.view(offset, length),
      unmap: () => {
        adoption.unmap();
        mapping.unmap();
      },
    };
  }
}
