// VfioUserServer: serves one PCI device model to vfio-user clients, one at a time. The model is
// any implementation of the simulated host's SimPciModel (edu, nic, or your own); the server
// plays the hardware and vfio-pci's part for it: config space, BARs, interrupts, DMA, reset,
// migration and dirty tracking.

import { LinuxHost, type HostKernel } from '@vmmkit/core';
import { MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY } from '@vmmkit/core/uapi';
import {
  DEFAULT_CAPABILITIES, VFIO_USER_MAJOR, VFIO_USER_MINOR, type VfioUserTransport, type VfioUserVersion,
} from '@vmmkit/core/vfio-user';
import { Census, type SimDmaFault, type SimPciModel } from '@vmmkit/sim';
import { ConfigSpace } from './config-space.js';
import { VfioUserConnection, type ServedDevice } from './connection.js';
import { DeviceFeatures } from './device-features.js';
import { DeviceRegions, type SharedBar } from './device-regions.js';
import { closeQuietly } from './dma-windows.js';
import { ModelBus } from './model-bus.js';
import { checkIoeventfdRegisters } from './region-io-fds.js';

/** How to serve a model. */
export interface VfioUserServerOptions {
  /** The model to serve; the server connects it to its bus (it must not be connected already). */
  readonly model: SimPciModel;
  /** The host the server makes its calls on (mmap of DMA windows, eventfd signals, memfds). Default: LinuxHost. */
  readonly host?: HostKernel;
  /**
   * VFIO_MIGRATION_* flags to offer. Default: STOP_COPY | PRE_COPY when the model has migratable
   * state, none otherwise (0 turns migration off).
   */
  readonly migrationFlags?: number;
  /** Let the model's time pass every `tickMs` of real time (its timers, its traffic). Default 10; 0: never. */
  readonly tickMs?: number;
  /** Share BARs with mmap areas through a memfd (the model must implement `shareBarMemory`). Default true. */
  readonly shareBars?: boolean;
  /** Where the server writes what it refuses and why. Default: nowhere. */
  readonly log?: (line: string) => void;
}

/**
 * A vfio-user device server. `serve(transport)` takes a connected client; a second client
 * while one is connected is turned away. Between clients the device keeps its state, and a
 * client that leaves (or dies, or sends garbage) leaves nothing behind: its fds are closed and
 * its DMA windows unmapped.
 */
export class VfioUserServer {
  readonly model: SimPciModel;
  readonly host: HostKernel;
  /** Kernel-side objects of the migration driver and DMA log, to prove nothing leaked. */
  readonly census = new Census();
  readonly #device: ServedDevice;
  readonly #bus: ModelBus;
  readonly #shared = new Map<number, SharedBar & { readonly memfd: number; unmap(): void }>();
  #connection: VfioUserConnection | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: VfioUserServerOptions) {
    this.model = options.model;
    checkIoeventfdRegisters(this.model);
    this.host = options.host ?? new LinuxHost();
    const log = options.log ?? (() => {});
    this.#bus = new ModelBus(this.model);
    const config = new ConfigSpace(this.model, () => this.#reset());
    const flags = options.migrationFlags ?? (this.model.migration ? VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY : 0);
    const features = new DeviceFeatures(this.model, flags, {
      writeObservers: this.#bus.writeObservers, census: this.census,
      windows: () => this.#connection?.dma.ranges() ?? [],
    });
    const version: VfioUserVersion = {
      major: VFIO_USER_MAJOR, minor: VFIO_USER_MINOR,
      capabilities: {
        // QEMU 11.1 refuses a max_msg_fds above its own limit of 16 (proxy.c, check_max_fds).
        ...DEFAULT_CAPABILITIES, maxMsgFds: 16, writeMultiple: true,
        ...(flags ? { migration: { pgsize: BigInt(this.host.pageSize), maxBitmapSize: 256n << 20n } } : {}),
      },
    };
    this.#device = {
      host: this.host, bus: this.#bus, model: this.model, features, version, log,
      regions: new DeviceRegions(this.model, config, this.#shared),
      reset: () => this.#reset(),
    };
    if (options.shareBars !== false) this.#shareBars();
    this.model.connect(this.#bus);
    const tick = options.tickMs ?? 10;
    if (tick > 0 && this.model.advance) {
      let last = this.#bus.now();
      this.#ticker = setInterval(() => {
        const now = this.#bus.now();
        this.model.advance!(now - last);
        last = now;
      }, tick);
      this.#ticker.unref();
    }
  }

  /** DMA the model started and the bus refused (or the client refused later), newest last. */
  get faults(): readonly SimDmaFault[] {
    return this.#bus.faults;
  }

  /** The connected client's session, if any. */
  get connection(): VfioUserConnection | undefined {
    return this.#connection;
  }

  /**
   * Serve a connected client. A second client while one is connected is closed at once (the
   * protocol has one client per socket). Returns the session; its `closed` resolves when it ends.
   */
  serve(transport: VfioUserTransport): VfioUserConnection | undefined {
    if (this.#closed || this.#connection) {
      transport.close();
      return undefined;
    }
    const connection = new VfioUserConnection(this.#device, transport);
    this.#connection = connection;
    this.#bus.client = connection;
    this.#device.log(`client connected on ${transport.endpoint}`);
    void connection.closed.then((error) => {
      if (this.#connection === connection) this.#connection = undefined;
      this.#device.log(`client left after ${connection.handled} commands${error ? ` (${error.message})` : ''}`);
    });
    return connection;
  }

  /** Stop serving: end the session, stop the model's clock, release the shared BAR files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#ticker);
    const connection = this.#connection;
    connection?.close();
    await connection?.closed;
    this.#releaseShared();
  }

  #releaseShared(): void {
    for (const bar of this.#shared.values()) {
      try {
        bar.unmap();
      } finally {
        closeQuietly(this.host, bar.memfd);
      }
    }
    this.#shared.clear();
  }

  #reset(): void {
    this.model.reset();
    this.#device.features.resetDone();
  }

  /**
   * Give each BAR with mmap areas memory from a memfd, so the client maps the same pages the
   * model reads and writes. Models without `shareBarMemory` keep their BARs behind messages.
   */
  #shareBars(): void {
    const share = this.model.shareBarMemory?.bind(this.model);
    if (!share) return;
    for (const bar of this.model.bars) {
      if (!bar.mmapAreas?.length) continue;
      const size = Number(bar.size);
      let memfd: number | undefined;
      try {
        memfd = this.host.memfdCreate(`vmmkit-${this.model.kind}-bar${bar.index}`, MFD_CLOEXEC);
        this.host.ftruncate(memfd, bar.size);
        const mapping = this.host.mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0n);
        this.#shared.set(bar.index, { fd: memfd, memfd, fileOffset: 0n, unmap: () => mapping.unmap() });
        share(bar.index, mapping.bytes);
      } catch (e) {
        if (memfd !== undefined && !this.#shared.has(bar.index)) closeQuietly(this.host, memfd);
        this.#releaseShared();
        throw e;
      }
    }
  }
}
