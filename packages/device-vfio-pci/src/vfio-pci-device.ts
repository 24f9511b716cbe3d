// The vfio-pci device (QEMU's hw/vfio/pci.c): realize attaches the host device through its
// backend and sets up config space, BARs and interrupts; the VMM (its guest model) reaches the
// device through config and BAR accessors and hears its interrupts as events.

import {
  PCI_COMMAND, PCI_INTERRUPT_PIN, PCI_MSIX_ENTRY_SIZE, VFIO_DEVICE_FLAGS_PCI, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
} from '@vmmkit/core/uapi';
import { EventEmitter } from 'eventemitter3';
import {
  ArgumentError, FirstFailure, UndoStack, VfioDevice, VfioError, VfioKernelDeviceIo, VmmEventBus, probeMigrationSupport, vfioStep,
  type AddressSpace, type HostKernel, type MsiMessage, type MsiRouter, type PciBarEventfd, type PciBarMemory, type PciFunction,
  type VfioDeviceLocation, type VfioRegionInfo, type VfioVmmDevice, type VmmObject, type VmVfio,
} from '@vmmkit/core';
import { BarEventfds } from './bar-eventfds.js';
import { checkMigration, irqCounts } from './device-probes.js';
import { MsixTable } from './msix-table.js';
import { VfioBar, type AccessSize } from './vfio-bar.js';
import { VfioPciConfig } from './vfio-pci-config.js';
import { VfioInterrupts, type InterruptMode } from './vfio-interrupts.js';
import type { VfioPciOptions } from './vfio-pci-options.js';

const PCI_COMMAND_DECODE = 0x7; // I/O, memory, bus master
/** saveState's layout: magic "VPCI", config length, MSI-X state length, then both. */
const CONFIG_STATE_MAGIC = 0x4943_5056;
const CONFIG_STATE_HEADER = 12;

/** An interrupt the device raised, with the message the guest programmed for it (MSI, MSI-X). */
export interface VfioPciInterrupt {
  readonly mode: InterruptMode;
  readonly vector: number;
  /** Signals counted since the last delivery (eventfds coalesce). */
  readonly count: bigint;
  readonly message?: { readonly address: bigint; readonly data: number };
}

export interface VfioPciEvents {
  interrupt: [e: VfioPciInterrupt];
}

/** What realize needs: where the device is, which backend attaches it, and the VM it joins. */
export interface VfioPciRealizeContext {
  readonly id: string;
  readonly host: HostKernel;
  readonly events: VmmEventBus;
  /** The VM's VFIO side, which attaches the device through its backend. */
  readonly vfio: VmVfio;
  /** The address space the device DMAs in. */
  readonly as: AddressSpace;
  readonly backend: string;
  /**
   * The device to realize over: a `VfioDevice` with the I/O its type chose (a vfio-user device
   * with its proxy, QEMU's vfio-user-pci), or where the kernel serves one (`location`: a device
   * made here with `VfioKernelDeviceIo`, QEMU's vfio-pci). Exactly one of the two.
   */
  readonly device?: VfioDevice;
  readonly location?: VfioDeviceLocation;
  /** The driver name the VM lists (`vfio-pci` unless a subtype says otherwise). */
  readonly driver?: string;
  readonly iommufd?: VmmObject;
  readonly options: VfioPciOptions;
  /**
   * What the device type set up around the VfioDevice and the device takes over once realized
   * (a vfio-user connection): released at the end of unrealize, after the detach. When realize
   * fails it is not called; the caller still holds what it set up.
   */
  readonly release?: () => void;
}

/**
 * A PCI device passed through VFIO, whatever serves it: the host kernel (vfio-pci) or another
 * process (vfio-user-pci). Every access to the device goes through `vfio.io`, and the accessors
 * that reach the device are asynchronous; they run one at a time in the order they were called,
 * as a vCPU's accesses reach a device, so a config write that enables MSI has set up its eventfds
 * before the next access starts.
 */
export class VfioPciDevice extends EventEmitter<VfioPciEvents> implements VfioVmmDevice, PciFunction {
  #bars: (VfioBar | undefined)[] = [];
  #eventfds: BarEventfds | undefined;
  #config!: VfioPciConfig;
  #interrupts!: VfioInterrupts;
  #msix: MsixTable | undefined;
  #maskAll = false;
  #intxPin = false;

  /** The tail of the accesses in flight: each one starts when the one before has settled. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly id: string,
    readonly driver: string,
    readonly vfio: VfioDevice,
    private readonly host: HostKernel,
    private readonly events: VmmEventBus,
    readonly options: VfioPciOptions,
    private readonly release: (() => void) | undefined,
  ) {
    super();
  }

  get name(): string {
    return this.vfio.name;
  }

  /** Realize the device. On failure everything done is undone and a VfioError says what failed. */
  static async realize(ctx: VfioPciRealizeContext): Promise<VfioPciDevice> {
    const vfio = ctx.device ?? new VfioDevice(ctx.location ?? {}, undefined, (d) => new VfioKernelDeviceIo(ctx.host, d));
    vfio.iommufd = ctx.iommufd;
    vfio.deviceDirtyPageTracking = ctx.options.deviceDirtyPageTracking ? 'auto' : 'off';
    vfio.enableMigration = ctx.options.enableMigration;
    vfio.preCopyDirtyPageTracking = ctx.options.preCopyDirtyPageTracking;
    const events = ctx.events;
    const device = new VfioPciDevice(ctx.id, ctx.driver ?? 'vfio-pci', vfio, ctx.host, events, ctx.options, ctx.release);
    await vfioStep('realize vfio-pci', vfio.name, () =>
      UndoStack.run(async (undo) => {
        await ctx.vfio.attach(vfio, ctx.backend, ctx.as);
        undo.push(() => ctx.vfio.detach(vfio));
        device.#checkInfo();
        await device.#setUp(undo);
        await probeMigrationSupport(vfio);
        checkMigration(vfio, events);
      }),
    );
    return device;
  }

  /**
   * Undo realize, after the accesses in flight: interrupts off, BARs unmapped, the device
   * detached. Carries on through failures. For a device that has failed (its server died or
   * stalled) turning interrupts off cannot reach it: that step's error is expected and dropped,
   * the eventfds are closed all the same.
   */
  async unrealize(): Promise<void> {
    await this.#serially(async () => {
      const errors = new FirstFailure();
      try {
        await this.#interrupts.disable();
      } catch (e) {
        if (!this.failure) errors.keep(e);
      }
      this.#interrupts.useRouter(undefined); // its routes went with the disable
      for (const bar of this.#bars) errors.run(() => bar?.close());
      this.#bars = [];
      errors.run(() => this.#eventfds?.close());
      await errors.runAsync(() => this.vfio.container?.backend.detachDevice(this.vfio));
      if (this.release) errors.run(this.release);
      this.removeAllListeners();
      errors.rethrow();
    });
  }

  /**
   * Why the device stopped working (its server died, stalled or broke the protocol), once it
   * has; undefined while it works. Every access to a failed device rejects with this error.
   */
  get failure(): VfioError | undefined {
    return this.vfio.failure;
  }

  /**
   * The emulated state migration carries beside the device's VFIO data: the guest's view of
   * config space and the MSI-X table and pending bits.
   */
  saveState(): Promise<Uint8Array> {
    return this.#serially(() => this.#saveState());
  }

  async #saveState(): Promise<Uint8Array> {
    const config = await this.#config.snapshot();
    const msix = this.#msix?.save() ?? new Uint8Array(0);
    const out = new Uint8Array(CONFIG_STATE_HEADER + config.byteLength + msix.byteLength);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, CONFIG_STATE_MAGIC, true);
    dv.setUint32(4, config.byteLength, true);
    dv.setUint32(8, msix.byteLength, true);
    out.set(config, CONFIG_STATE_HEADER);
    out.set(msix, CONFIG_STATE_HEADER + config.byteLength);
    return out;
  }

  /**
   * Restore `saveState`'s state on a migration destination (before the guest runs): MSI-X
   * table first, then config space, whose MSI or MSI-X enable sets up the interrupts again.
   * @throws VfioError when the state is not of this kind of device.
   */
  loadState(state: Uint8Array): Promise<void> {
    return this.#serially(() => vfioStep('load the migrated config state', this.name, async () => {
      const dv = new DataView(state.buffer, state.byteOffset, state.byteLength);
      if (state.byteLength < CONFIG_STATE_HEADER || dv.getUint32(0, true) !== CONFIG_STATE_MAGIC) {
        throw new ArgumentError('not a vfio-pci config state', 'state');
      }
      const configLength = dv.getUint32(4, true);
      const msixLength = dv.getUint32(8, true);
      if (CONFIG_STATE_HEADER + configLength + msixLength !== state.byteLength) throw new ArgumentError('config state lengths do not add up', 'state');
      const msix = state.subarray(CONFIG_STATE_HEADER + configLength);
      if (msixLength > 0 && !this.#msix) throw new ArgumentError('the state has an MSI-X table, the device has no MSI-X', 'state');
      this.#msix?.load(msix);
      try {
        await this.#config.restore(state.subarray(CONFIG_STATE_HEADER, CONFIG_STATE_HEADER + configLength));
      } finally {
        this.#syncRoutes();
      }
    }));
  }

  /** The guest reads config space. */
  configRead(offset: number, size: 1 | 2 | 4): Promise<number> {
    return this.#serially(() => this.#config.read(offset, size));
  }

  /** The guest writes config space (enabling MSI or MSI-X here sets up their eventfds). */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    return this.#serially(async () => {
      try {
        await this.#config.write(offset, size, value);
      } finally {
        this.#syncRoutes();
      }
    });
  }

  /** The guest reads a BAR (the MSI-X table and PBA are emulated). */
  barRead(bar: number, offset: number, size: AccessSize): Promise<bigint> {
    return this.#serially(async () => {
      if (this.#msix?.covers(bar, offset, size)) return this.#msix.read(bar, offset, size);
      return this.#bar(bar).read(offset, size);
    });
  }

  /** The guest writes a BAR. */
  barWrite(bar: number, offset: number, size: AccessSize, value: bigint): Promise<void> {
    return this.#serially(async () => {
      if (this.#msix?.covers(bar, offset, size)) {
        for (const v of this.#msix.write(bar, offset, size, value)) this.#deliverMsix(v, 1n);
        this.#syncRoutes();
        return;
      }
      await this.#bar(bar).write(offset, size, value);
    });
  }

  /**
   * The mmapped parts of BAR `bar` an accelerator may map for the guest (its memslots), without
   * the parts holding the MSI-X table or PBA, which stay emulated here. The mappings stay the
   * BAR's; the list is valid until unrealize.
   */
  barMemory(bar: number): readonly PciBarMemory[] {
    const cap = this.#msix?.cap;
    const trapped = !cap ? [] : [
      ...(cap.tableBar === bar ? [{ offset: cap.tableOffset, size: cap.vectors * PCI_MSIX_ENTRY_SIZE }] : []),
      ...(cap.pbaBar === bar ? [{ offset: cap.pbaOffset, size: Math.ceil(cap.vectors / 64) * 8 }] : []),
    ];
    return this.#bars[bar]?.memory(trapped) ?? [];
  }

  /** The size of BAR `index` in bytes, 0 when the device has none (the PCI host bridge maps BARs by it). */
  barSize(index: number): bigint {
    return this.#bars[index]?.size ?? 0n;
  }

  /** The eventfds the device wants signalled for guest writes to BAR `bar` (its server's ioeventfds). */
  barEventfds(bar: number): readonly PciBarEventfd[] {
    return this.#eventfds?.of(bar) ?? [];
  }

  /** The MSI and MSI-X interrupts the device raises, with the message the guest programmed. */
  onMessageInterrupt(deliver: (message: { readonly address: bigint; readonly data: number }) => void): () => void {
    const listener = (e: VfioPciInterrupt): void => {
      if (e.message) deliver(e.message);
    };
    this.on('interrupt', listener);
    return () => void this.off('interrupt', listener);
  }

  /**
   * Deliver enabled, unmasked MSI and MSI-X vectors through `router` (an accelerator's irqfds),
   * or stop (`undefined`): see PciFunction.useMsiRouter. Routes follow the guest's programming
   * from then on; a vector the router refuses is delivered through `onMessageInterrupt`.
   */
  useMsiRouter(router: MsiRouter | undefined): void {
    if (!this.#interrupts) return;
    this.#interrupts.useRouter(router);
    this.#syncRoutes();
  }

  /** The vectors whose eventfds the router delivers now (the VMM does not read them). */
  get routedVectors(): number[] {
    return this.#interrupts.routedVectors;
  }

  /** A BAR's accessor: its size and which parts are mmapped. */
  bar(index: number): VfioBar {
    return this.#bar(index);
  }

  /** The active interrupt mode. */
  get interruptMode(): InterruptMode | undefined {
    return this.#interrupts.mode;
  }

  /** End of an INTx interrupt: unmask it in the device (the kernel, or the server). */
  eoi(): Promise<void> {
    return this.#serially(() => this.#interrupts.unmaskIntx());
  }

  /**
   * Reset the device (QEMU's vfio_pci_reset): a function reset when it has one, else a hot reset
   * of its bus or slot through the backend that affects no other device of the VM.
   */
  async reset(): Promise<void> {
    await this.#aroundReset(async () => {
      if (this.vfio.resetWorks) {
        await this.vfio.io.reset();
        return;
      }
      const hotReset = this.vfio.container?.backend.pciHotReset;
      if (!hotReset) throw new VfioError('reset the device', this.name, { detail: 'no function reset, and the backend cannot hot reset' });
      await hotReset.call(this.vfio.container!.backend, this.vfio, true);
    });
  }

  /** Reset the device's PCI bus or slot through its backend (QEMU's vfio_pci_hot_reset). */
  async hotReset(single = true): Promise<void> {
    await this.#aroundReset(async () => {
      const backend = this.vfio.container?.backend;
      if (!backend?.pciHotReset) throw new VfioError('hot reset', this.name, { detail: `the ${backend?.kind ?? 'unknown'} backend cannot hot reset` });
      await backend.pciHotReset(this.vfio, single);
    });
  }

  /**
   * Interrupts off and decoding off before a reset; interrupts as after power-on afterwards. Runs
   * after the accesses in flight, and the next ones wait for it.
   */
  #aroundReset(reset: () => Promise<void>): Promise<void> {
    return this.#serially(async () => {
      await this.#interrupts.disable();
      const command = await this.#config.read(PCI_COMMAND, 2);
      await this.#config.write(PCI_COMMAND, 2, command & ~PCI_COMMAND_DECODE);
      try {
        await reset();
      } finally {
        this.#config.resetInterrupts();
        this.#maskAll = false;
        if (this.#intxPin) await this.#interrupts.enable('intx');
        this.#syncRoutes();
      }
    });
  }

  /** Run `access` once every access called before it has settled (whatever their outcome). */
  #serially<T>(access: () => T | Promise<T>): Promise<T> {
    const run = this.#queue.then(access, access);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #checkInfo(): void {
    const info = this.vfio.info!;
    if (!(info.flags & VFIO_DEVICE_FLAGS_PCI)) throw new VfioError('use as vfio-pci', this.name, { detail: 'not a PCI device' });
    if (info.numRegions <= VFIO_PCI_CONFIG_REGION_INDEX) throw new VfioError('use as vfio-pci', this.name, { detail: `unexpected number of regions ${info.numRegions}` });
    if (info.numIrqs <= VFIO_PCI_MSIX_IRQ_INDEX) throw new VfioError('use as vfio-pci', this.name, { detail: `unexpected number of IRQs ${info.numIrqs}` });
  }

  /** Regions, config space, interrupts; each step undone on a later failure. */
  async #setUp(undo: UndoStack): Promise<void> {
    const io = this.vfio.io;
    const regions: VfioRegionInfo[] = [];
    for (let i = 0; i <= VFIO_PCI_CONFIG_REGION_INDEX; i++) regions.push(await io.regionInfo(i));
    for (let i = 0; i < 6; i++) {
      if (regions[i]!.size === 0n) continue;
      this.#bars[i] = VfioBar.open(this.host, io, this.name, regions[i]!);
      const bar = this.#bars[i]!;
      undo.push(() => bar.close());
    }
    const warn = (message: string): void => void this.events.emit('vfio:warning', { device: this.name, message });
    const eventfds = await BarEventfds.fetch(this.host, io, this.name, regions.slice(0, 6).map((r) => r.size), warn);
    this.#eventfds = eventfds;
    undo.push(() => eventfds.close());
    this.#config = await VfioPciConfig.load(io, this.name, regions[VFIO_PCI_CONFIG_REGION_INDEX]!,
      regions.slice(0, 7).map((r) => r.size), {
        msiChanged: (enabled, vectors) => this.#switchTo(enabled ? 'msi' : undefined, vectors),
        msixChanged: (enabled, maskAll) => this.#msixChanged(enabled, maskAll),
      });
    // INTx and MSI, and MSI-X only when config space has its capability, as QEMU's
    // vfio_msix_early_setup asks: mdev drivers answer EINVAL for IRQ indexes they lack (Linux's
    // mtty sample for MSI-X), and the error and request IRQs do not exist on every device.
    const msix = this.#config.capabilities.msix;
    const counts = await irqCounts(this.vfio, msix ? VFIO_PCI_MSIX_IRQ_INDEX + 1 : VFIO_PCI_MSIX_IRQ_INDEX);
    this.#interrupts = new VfioInterrupts(this.host, this.vfio, counts, (mode, vector, count) => this.#deliver(mode, vector, count),
      (message) => this.events.emit('vfio:warning', { device: this.name, message }));
    undo.push(() => this.#interrupts.disable());
    if (msix) this.#msix = new MsixTable(msix);
    // Like QEMU, INTx is live from realize when the device has an interrupt pin.
    this.#intxPin = (await this.#config.read(PCI_INTERRUPT_PIN, 1)) !== 0 && (counts[0] ?? 0) > 0;
    if (this.#intxPin) await this.#interrupts.enable('intx');
  }

  /** MSI or MSI-X on (or off, back to INTx if the device has a pin). */
  async #switchTo(mode: 'msi' | 'msix' | undefined, vectors: number): Promise<void> {
    if (mode) return this.#interrupts.enable(mode, vectors);
    await this.#interrupts.disable();
    if (this.#intxPin) await this.#interrupts.enable('intx');
  }

  async #msixChanged(enabled: boolean, maskAll: boolean): Promise<void> {
    const wasEnabled = this.#interrupts.mode === 'msix';
    this.#maskAll = maskAll;
    if (enabled && !wasEnabled) await this.#switchTo('msix', this.#msix!.cap.vectors);
    else if (!enabled && wasEnabled) await this.#switchTo(undefined, 0);
    if (enabled) for (const v of this.#msix!.takeDeliverable(maskAll)) this.#deliverMsix(v, 1n);
  }

  #deliver(mode: InterruptMode, vector: number, count: bigint): void {
    if (mode === 'msix') {
      if (this.#msix!.signal(vector, this.#maskAll)) this.#deliverMsix(vector, count);
      return;
    }
    const message = mode === 'msi' ? this.#config.msiMessage(vector) : undefined;
    this.emit('interrupt', { mode, vector, count, message });
  }

  #deliverMsix(vector: number, count: bigint): void {
    this.#msix!.clearPending(vector);
    this.emit('interrupt', { mode: 'msix', vector, count, message: this.#msix!.message(vector) });
  }

  /**
   * Route what the guest enabled and left unmasked, with the messages it programmed: every MSI
   * vector, the MSI-X vectors not masked (nor the whole function). Called after every guest
   * access that may change them; routing failures become warnings, never the access's.
   */
  #syncRoutes(): void {
    const wanted = new Map<number, MsiMessage>();
    const mode = this.#interrupts.mode;
    for (let v = 0; v < this.#interrupts.vectors; v++) {
      if (mode === 'msi') wanted.set(v, this.#config.msiMessage(v));
      else if (mode === 'msix' && !this.#maskAll && !this.#msix!.masked(v)) wanted.set(v, this.#msix!.message(v));
    }
    this.#interrupts.route(wanted);
  }

  #bar(index: number): VfioBar {
    const bar = this.#bars[index];
    if (!bar) throw new VfioError(`access BAR${index}`, this.name, { detail: 'the device has no such BAR' });
    return bar;
  }
}
