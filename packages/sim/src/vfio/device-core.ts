// vfio-pci's per-device state, shared by every fd open on the device: open count, enable on
// first open and disable on last close (vfio_pci_core_enable/disable), the function reset that
// saves and restores config space, and the interrupt, migration and DMA logging state.

import type { SimMigrationDriver } from '../devices/pci-model.js';
import type { SimDevice } from '../kernel/sim-device.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { fail } from '../kernel/sim-errno.js';
import { PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '@vmmkit/core/uapi';
import { DmaLogging } from './dma-logging.js';
import { VfioPciIrqs } from './irq-state.js';
import { VfioMigration } from './migration-driver.js';
import { VfioPciConfig } from './pci-config.js';

/** vfio-pci encodes a region index in bits 40.. of the device fd offset (VFIO_PCI_OFFSET_SHIFT). */
export const VFIO_PCI_OFFSET_SHIFT = 40n;
export const VFIO_PCI_OFFSET_MASK = (1n << VFIO_PCI_OFFSET_SHIFT) - 1n;

/** Something that holds the device open: a device fd after vfio_df_open. */
export interface DeviceOpener {
  readonly via: 'group' | 'cdev';
}

/** The vfio-pci state of one device. */
export class VfioPciCore {
  /** Device fds that opened the device (vfio_device.open_count). */
  readonly openers = new Set<DeviceOpener>();
  /** Opened through its cdev (vfio_device_cdev_opened). */
  cdevOpened = false;
  /** Whether a function reset worked at open: VFIO_DEVICE_FLAGS_RESET. */
  resetWorks = false;
  /** The virtualized config space, while the device is open. */
  config: VfioPciConfig | undefined;
  readonly irqs: VfioPciIrqs;
  /** Migration v2, for devices configured with migration flags. */
  readonly migration: SimMigrationDriver | undefined;
  /** Device DMA logging, for devices configured with it. */
  readonly logging: DmaLogging | undefined;
  /** pci_saved_state: config space saved at open, restored at last close. */
  #saved: Uint8Array | undefined;

  constructor(
    readonly kernel: SimKernel,
    readonly device: SimDevice,
  ) {
    this.irqs = new VfioPciIrqs(device, kernel.fds, kernel.census);
    this.migration = device.migrationFlags && device.model.migration ? this.#migrationDriver() : undefined;
    this.logging = device.dmaLogging ? new DmaLogging({ writeObservers: device.writeObservers, census: kernel.census }) : undefined;
  }

  /** The model's own migration driver, or the generic one. */
  #migrationDriver(): SimMigrationDriver {
    const { model, migrationFlags: flags } = this.device;
    return model.migrationDriver?.({ flags, memory: this.kernel.memory, census: this.kernel.census }) ?? new VfioMigration({
      flags, kind: model.kind, migration: model.migration!, memory: this.kernel.memory, census: this.kernel.census,
      keepResuming: this.device.config.migration?.resumeFailure === 'resuming',
    });
  }

  get isOpen(): boolean {
    return this.openers.size > 0;
  }

  /** vfio_df_open: the first open enables the device. A cdev may only open a device nobody holds. */
  open(opener: DeviceOpener): void {
    if (opener.via === 'cdev' && this.isOpen) fail('EINVAL', 'a device opened through its cdev cannot be opened again');
    if (!this.isOpen) this.#enable();
    this.openers.add(opener);
    if (opener.via === 'cdev') this.cdevOpened = true;
    this.kernel.census.add('device_open');
  }

  /** vfio_df_close: the last close disables the device. */
  close(opener: DeviceOpener): void {
    if (!this.openers.delete(opener)) return;
    this.kernel.census.remove('device_open');
    if (this.isOpen) return;
    this.#disable();
    this.cdevOpened = false;
  }

  /**
   * pci_try_reset_function: save config space, reset the function, restore config space; the
   * migration driver's reset_done returns the migration state to RUNNING.
   */
  functionReset(): void {
    const saved = this.device.model.config.slice();
    this.device.model.reset();
    this.device.model.config.set(saved);
    this.migration?.resetDone();
  }

  /** vfio_pci_core_enable + the migration driver's open_device. */
  #enable(): void {
    const model = this.device.model;
    // Don't let the saved state include bus mastering (pci_clear_master), then pci_enable_device.
    let cmd = this.#command() & ~PCI_COMMAND_MASTER;
    if (model.bars.some((b) => b.type !== 'io' && b.size > 0n)) cmd |= PCI_COMMAND_MEMORY;
    if (model.bars.some((b) => b.type === 'io' && b.size > 0n)) cmd |= PCI_COMMAND_IO;
    this.#setCommand(cmd);
    this.resetWorks = this.device.resettable && !model.driverReset;
    if (this.resetWorks) this.functionReset();
    this.#saved = model.config.slice();
    this.config = new VfioPciConfig(model, {
      intxDisable: (disabled) => this.irqs.setVirqDisabled(disabled),
      flr: () => {
        if (this.resetWorks) this.functionReset();
      },
    });
    this.irqs.connect();
    this.migration?.open();
  }

  /** vfio_pci_core_disable + close_device: stop DMA, drop interrupts, data fds and logging, reset. */
  #disable(): void {
    this.#setCommand(this.#command() & ~PCI_COMMAND_MASTER);
    this.irqs.release();
    this.migration?.close();
    this.logging?.stop();
    this.config = undefined;
    this.#setCommand(PCI_COMMAND_INTX_DISABLE);
    if (this.resetWorks) this.device.model.reset();
    this.device.model.config.set(this.#saved!);
    this.#saved = undefined;
  }

  #command(): number {
    const config = this.device.model.config;
    return config[PCI_COMMAND]! | (config[PCI_COMMAND + 1]! << 8);
  }

  #setCommand(cmd: number): void {
    const config = this.device.model.config;
    config[PCI_COMMAND] = cmd & 0xff;
    config[PCI_COMMAND + 1] = (cmd >>> 8) & 0xff;
  }
}

const cores = new WeakMap<SimDevice, VfioPciCore>();

/** The vfio-pci state of `device`, created on first use. */
export function vfioPciCore(kernel: SimKernel, device: SimDevice): VfioPciCore {
  let core = cores.get(device);
  if (!core) {
    core = new VfioPciCore(kernel, device);
    cores.set(device, core);
  }
  return core;
}
