// Vmm: the composition root. A VM is a DI container (child of the process root) holding the
// host, guest memory, the event bus and whatever the plugins register; objects and devices come
// from QEMU-style descriptions and are validated before anything is created.

import { container as tsyringeRoot, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { ConfigError, MigrationInProgressError } from '../errors/vmm-error.js';
import { FirstFailure } from '../errors/first-failure.js';
import type { VmmPlugin } from '../di/plugin.js';
import { token } from '../di/token.js';
import { HostKernel } from '../host/host-kernel.js';
import { VmmEventBus } from '../events/vmm-events.js';
import { AddressSpace } from '../memory/address-space.js';
import { GuestMemory, type RamSpec } from '../memory/guest-memory.js';
import { VfioIommuBackends } from '../vfio/vfio-iommu-backend.js';
import { VmVfio } from '../vfio/vm-vfio.js';
import { PciBus } from './pci-bus.js';
import { parseDescription, validateOptions, type Description } from './options.js';
import { VmmDeviceTypes, type VmmDevice } from './vmm-device.js';
import { VmmObjectTypes, type VmmObject } from './vmm-object.js';

/** How to create a VMM. */
export interface VmmCreateOptions {
  /** The host kernel: `new LinuxHost()`, or `new SimHost({...})`. */
  readonly host: HostKernel;
  /** The plugins the VMM is composed of (backends, device types, migration, ...). */
  readonly plugins: readonly VmmPlugin[];
  /** Guest RAM blocks, allocated with host.mmap. Default: none. */
  readonly memory?: readonly RamSpec[];
  /**
   * How guest RAM is backed: anonymous memory (default), or memfds mapped shared, whose files a
   * vfio-user server maps to DMA into RAM directly (QEMU's memory-backend-memfd,share=on).
   */
  readonly memoryBacking?: 'anonymous' | 'memfd';
  /** A name for messages. */
  readonly name?: string;
  /**
   * Create the VM paused, waiting for an incoming migration (QEMU's -incoming): its vCPUs stay
   * stopped until a migration starts it, or `resume()`. Default: running.
   */
  readonly incoming?: boolean;
}

/** Which way a migration moves the VM. */
export type MigrationDirection = 'outgoing' | 'incoming';

/** The migration a VM is part of, as `Vmm.migration` shows it. */
export interface VmmMigrationState {
  readonly direction: MigrationDirection;
  /** Aborts when the migration is to stop: its caller cancelled it, or the VMM closes. */
  readonly signal: AbortSignal;
}

/** What the VM keeps of the migration it runs: how to cancel it, and when it ends. */
interface RunningMigration extends VmmMigrationState {
  readonly controller: AbortController;
  done?: Promise<unknown>;
}

/** The VMM a container belongs to, for plugins that work on the whole VM (migration). */
export const VmmInstance = token<Vmm>('vmm.instance');

// The process's root container. Nothing is ever registered in tsyringe's global container itself.
let processRoot: DependencyContainer | undefined;
const root = (): DependencyContainer => (processRoot ??= tsyringeRoot.createChildContainer());

export class Vmm {
  readonly name: string;
  readonly events = new VmmEventBus();
  readonly #objects = new Map<string, VmmObject>();
  readonly #devices = new Map<string, VmmDevice>();
  /** 'closing' refuses new work while a running migration is cancelled; 'closed' refuses everything. */
  #state: 'open' | 'closing' | 'closed' = 'open';
  #running = true;
  #migration: RunningMigration | undefined;

  /** The bus devices sit on: where their DMA goes (system memory, or a guest IOMMU's window). */
  readonly pciBus: PciBus;
  /** The VM's VFIO backends, address spaces and containers. */
  readonly vfio: VmVfio;

  private constructor(
    /**
     * The VM's DI container, where plugins register what they provide (device and object types,
     * backends, RAM dirty-log providers) and look up what the VM offers them.
     */
    readonly container: DependencyContainer,
    readonly host: HostKernel,
    readonly memory: GuestMemory,
    /** System memory as devices without a guest IOMMU see it. */
    readonly addressSpace: AddressSpace,
    name: string,
  ) {
    this.name = name;
    this.pciBus = new PciBus(addressSpace);
    this.vfio = new VmVfio(memory, () => this.#registered(VfioIommuBackends));
  }

  /**
   * Compose a VMM: register the plugins, allocate guest RAM and lay it out in system memory.
   * @throws ConfigError for a plugin given twice or a bad memory layout.
   */
  static async create(options: VmmCreateOptions): Promise<Vmm> {
    const names = new Set<string>();
    for (const p of options.plugins) {
      if (names.has(p.name)) throw new ConfigError(`plugin '${p.name}' is given twice`, 'plugins', p.name);
      names.add(p.name);
    }
    const memory = GuestMemory.allocate(options.host, options.memory ?? [], { backing: options.memoryBacking });
    const container = root().createChildContainer();
    const as = new AddressSpace('system memory');
    const vmm = new Vmm(container, options.host, memory, as, options.name ?? 'vm');
    vmm.#running = !options.incoming;
    container.register(VmmInstance, { useValue: vmm });
    container.register(HostKernel, { useValue: options.host });
    container.register(VmmEventBus, { useValue: vmm.events });
    container.register(GuestMemory, { useValue: memory });
    container.register(AddressSpace, { useValue: as });
    try {
      for (const p of options.plugins) p.register(container);
      for (const block of memory.blocks) {
        await as.addSection({ kind: 'ram', start: block.gpa, size: block.size, block, offset: 0n, readonly: false });
      }
    } catch (e) {
      memory.free();
      await container.dispose();
      throw e;
    }
    return vmm;
  }

  /**
   * Whether the guest runs: the VMM's vCPU loops run only while it does, and follow the
   * 'vm:run-state' event. Migration pauses the source at switchover and starts the destination.
   */
  get running(): boolean {
    return this.#running;
  }

  /** Stop the vCPUs (QEMU's vm_stop). Nothing happens when already paused. */
  pause(reason = 'paused'): void {
    if (!this.#running) return;
    this.#running = false;
    this.events.emit('vm:run-state', { running: false, reason });
  }

  /** Run the vCPUs again (QEMU's vm_start). Nothing happens when already running. */
  resume(reason = 'running'): void {
    // A migration cancelled by close() still puts its guest back as it found it.
    if (this.#state === 'closed') throw new ConfigError(`VMM '${this.name}' is closed`);
    if (this.#running) return;
    this.#running = true;
    this.events.emit('vm:run-state', { running: true, reason });
  }

  /** The migration the VM is part of now, if any. */
  get migration(): VmmMigrationState | undefined {
    return this.#migration;
  }

  /**
   * Run a migration of this VM: the VM knows it migrates until `body` settles, so that a second
   * migration, hotplug and unplug are refused meanwhile, and `close()` cancels it (through the
   * signal `body` gets, which also follows `options.signal`) and waits for it to end.
   * @throws MigrationInProgressError, before anything runs, when a migration runs already;
   *   ConfigError when the VMM is closed; otherwise what `body` throws.
   */
  async runMigration<T>(direction: MigrationDirection, options: { readonly signal?: AbortSignal }, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.#assertOpen();
    if (this.#migration) throw new MigrationInProgressError(`start an ${direction} migration`, this.#migration.direction, this.name);
    const controller = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    const migration: RunningMigration = { direction, signal, controller };
    this.#migration = migration;
    try {
      const done = body(signal);
      migration.done = done;
      return await done;
    } finally {
      this.#migration = undefined;
    }
  }

  /** The objects, by id. */
  get objects(): ReadonlyMap<string, VmmObject> {
    return this.#objects;
  }

  /** The realized devices, in the order they were added. */
  get devices(): VmmDevice[] {
    return [...this.#devices.values()];
  }

  /** A device by id. */
  device(id: string): VmmDevice | undefined {
    return this.#devices.get(id);
  }

  /**
   * Add an object: `'iommufd,id=iommufd0'` or `{ type: 'iommufd', id: 'iommufd0' }`.
   * @throws ConfigError for an unknown type, a missing or taken id, or a bad option.
   */
  addObject(desc: Description): VmmObject {
    this.#assertOpen();
    const parsed = parseDescription(desc, '-object', 'type');
    const type = this.#registered(VmmObjectTypes).find((t) => t.type === parsed.type);
    if (!type) throw new ConfigError(`${parsed.label}: unknown object type '${parsed.type}' (known: ${this.#known(VmmObjectTypes, (t) => t.type)})`);
    const options = validateOptions(parsed, type.options, (t, id) => this.#objects.get(id)?.type === t);
    const id = options.id;
    if (typeof id !== 'string') throw new ConfigError(`${parsed.label}: an object needs id=`, 'id');
    if (this.#objects.has(id)) throw new ConfigError(`${parsed.label}: an object with id '${id}' already exists`, 'id', id);
    const object = type.create({ ...options, id }, { host: this.host, events: this.events });
    this.#objects.set(id, object);
    this.events.emit('object:added', { id, type: object.type });
    return object;
  }

  /** Remove an object that no device uses any more. */
  async removeObject(id: string): Promise<void> {
    const object = this.#objects.get(id);
    if (!object) throw new ConfigError(`no object with id '${id}'`, 'id', id);
    const busy = object.busyReason?.();
    if (busy) throw new ConfigError(`object '${id}' is in use: ${busy}`, 'id', id);
    await object.close();
    this.#objects.delete(id);
    this.events.emit('object:removed', { id, type: object.type });
  }

  /**
   * Realize a device: `'vfio-pci,host=0000:00:03.0,iommufd=iommufd0'` or a typed description.
   * @throws ConfigError for a bad description; the device type's error when realize fails
   *   (after undoing everything it did).
   */
  async addDevice(desc: Description): Promise<VmmDevice> {
    this.#assertOpen();
    const parsed = parseDescription(desc, '-device', 'driver');
    if (this.#migration) throw new MigrationInProgressError(`add a device (${parsed.label})`, this.#migration.direction, this.name);
    const type = this.#registered(VmmDeviceTypes).find((t) => t.driver === parsed.type);
    if (!type) throw new ConfigError(`${parsed.label}: unknown device driver '${parsed.type}' (known: ${this.#known(VmmDeviceTypes, (t) => t.driver)})`);
    const options = validateOptions(parsed, type.options, (t, id) => this.#objects.get(id)?.type === t);
    const id = typeof options.id === 'string' ? options.id : this.#nextDeviceId(type.driver);
    if (this.#devices.has(id)) throw new ConfigError(`${parsed.label}: a device with id '${id}' already exists`, 'id', id);
    const device = await type.realize({
      id,
      options,
      host: this.host,
      events: this.events,
      memory: this.memory,
      pciBus: this.pciBus,
      vfio: this.vfio,
      object: (objectId) => {
        const o = this.#objects.get(objectId);
        if (!o) throw new ConfigError(`no object with id '${objectId}'`, 'id', objectId);
        return o;
      },
    });
    this.#devices.set(id, device);
    this.events.emit('device:realized', { id, driver: device.driver, name: device.name });
    return device;
  }

  /**
   * Unrealize a device and release everything it held.
   * @throws ConfigError for an unknown id; MigrationInProgressError while the VM migrates.
   */
  async removeDevice(id: string): Promise<void> {
    const entry = this.#devices.get(id);
    if (!entry) throw new ConfigError(`no device with id '${id}'`, 'id', id);
    if (this.#migration) throw new MigrationInProgressError(`remove device '${id}'`, this.#migration.direction, this.name);
    this.#devices.delete(id);
    await entry.unrealize();
    this.events.emit('device:unrealized', { id, driver: entry.driver, name: entry.name });
  }

  /**
   * Cancel a migration that runs (and wait for it to end), then unrealize every device (newest
   * first), close every object, free guest memory. Carries on through failures and throws the
   * first one at the end.
   */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    const migration = this.#migration;
    if (migration) {
      migration.controller.abort(new ConfigError(`VMM '${this.name}' is closing`));
      await migration.done?.catch(() => undefined);
    }
    this.#state = 'closed';
    this.pause('closing');
    const failures = new FirstFailure();
    for (const id of [...this.#devices.keys()].reverse()) await failures.runAsync(() => this.removeDevice(id));
    for (const id of [...this.#objects.keys()].reverse()) await failures.runAsync(() => this.removeObject(id));
    for (const s of [...this.addressSpace.sections].reverse()) await failures.runAsync(() => this.addressSpace.removeSection(s));
    this.memory.free();
    await failures.runAsync(() => this.container.dispose());
    failures.rethrow();
  }

  #assertOpen(): void {
    if (this.#state !== 'open') throw new ConfigError(`VMM '${this.name}' is ${this.#state}`);
  }

  #nextDeviceId(driver: string): string {
    let n = 0;
    while (this.#devices.has(`${driver}.${n}`)) n++;
    return `${driver}.${n}`;
  }

  /** Everything the plugins registered under a multi-registration token. */
  #registered<T>(token: InjectionToken<T>): T[] {
    return this.container.isRegistered(token, true) ? this.container.resolveAll<T>(token) : [];
  }

  #known<T>(token: InjectionToken<T>, name: (t: T) => string): string {
    const all = this.#registered(token);
    return all.map(name).join(', ') || 'none; is its plugin missing?';
  }
}
