// Linux's mtty sample mdev (samples/vfio-mdev/mtty.c), its single-port type (mtty-1), as a
// simulated device: a PCI serial card with a 16550-like port in an 8-byte I/O BAR, INTx and
// MSI, and VFIO migration v2 (STOP_COPY, P2P, PRE_COPY) through a driver that mirrors mtty's.

import { ConfigError } from '@vmmkit/core';
import type { SimDeviceConfig } from '../config.js';
import { MttyMigration } from './mtty-migration.js';
import { MttyPort } from './mtty-serial.js';
import type {
  SimBar, SimDeviceBus, SimMigratableState, SimMigrationContext, SimMigrationDriver, SimPciModel,
} from './pci-model.js';

const BAR0: SimBar = { index: 0, size: 8n, type: 'io' };
const MTTY_FLAGS = ['STOP_COPY', 'P2P', 'PRE_COPY'] as const;
/** VFIO IRQ indexes mtty_get_irq_info refuses: MSI-X, ERR and REQ. */
const REFUSED_IRQ_INDEXES = [2, 3, 4] as const;

/**
 * The mtty device (`model: 'mtty'`, as an mdev: `{ uuid, model: 'mtty', migration: { flags:
 * ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: true } }`, since mtty has DMA logging ops that
 * log nothing). As on Linux, VFIO_DEVICE_RESET
 * resets the migration state alone and no VFIO_DEVICE_FLAGS_RESET is reported; nothing resets
 * the device at open or close, so its migration state and port survive a close. Differences
 * from Linux's, which the simulated kernel's vfio-pci layer imposes: config space goes through
 * vfio-pci's virtualization (mtty ignores most config writes), and its region is 256 bytes
 * long (mtty's is 255).
 */
export class MttyModel implements SimPciModel, SimMigratableState {
  readonly kind = 'mtty';
  readonly config: Uint8Array;
  readonly bars: readonly SimBar[] = [BAR0];
  readonly interrupts = { intx: true, msi: 1, msix: 0, infoRefused: REFUSED_IRQ_INDEXES } as const;
  readonly migration: SimMigratableState = this;
  readonly driverReset = true;
  readonly port = new MttyPort(() => this.#interrupt());
  #bus: SimDeviceBus | undefined;
  #version = 0;

  constructor(config: SimDeviceConfig) {
    const flags = config.migration?.flags ?? [];
    if (flags.length && !(flags.length === 3 && MTTY_FLAGS.every((f) => flags.includes(f)))) {
      // mtty_init_dev sets all three; its arcs are those of a device with all three.
      throw new ConfigError(`SimHost: mtty '${config.uuid ?? config.bdf}': migration flags are STOP_COPY, P2P and PRE_COPY or none, got ${flags.join(', ')}`);
    }
    this.config = mttyConfigSpace();
  }

  get version(): number {
    return this.#version;
  }

  connect(bus: SimDeviceBus): void {
    this.#bus = bus;
  }

  /** mtty answers every access one byte at a time: wider reads see the first register, zero-extended. */
  barRead(_bar: number, offset: number, _size: 1 | 2 | 4 | 8): bigint {
    const value = this.port.read(offset);
    if (offset === 0) this.#version++; // reading RX takes a byte out of the FIFO
    return BigInt(value);
  }

  barWrite(_bar: number, offset: number, _size: 1 | 2 | 4 | 8, value: bigint): void {
    this.port.write(offset, Number(value & 0xffn));
    this.#version++;
  }

  /** mtty_reset resets the migration state only; the port keeps its registers and FIFO. */
  reset(): void {}

  /** The port's state, as mtty's stream carries it after its header. */
  save(): Uint8Array {
    return this.port.save();
  }

  load(state: Uint8Array): void {
    this.port.load(state);
    this.#version++;
  }

  /** mtty neither DMAs nor needs stopping: its STOP and RUNNING arcs do nothing to the port. */
  setRunning(_running: boolean): void {}

  migrationDriver(context: SimMigrationContext): SimMigrationDriver {
    return new MttyMigration(context, this);
  }

  /**
   * mtty_trigger_interrupt signals whichever of INTx and MSI the user set up; the simulated
   * vfio-pci layer delivers the raise of the active one. INTx is an edge here, as in mtty,
   * which signals the eventfd without holding a line asserted.
   */
  #interrupt(): void {
    this.#bus?.raiseIrq({ kind: 'msi', vector: 0 });
    this.#bus?.raiseIrq({ kind: 'intx' });
    this.#bus?.lowerIntx();
  }
}

/** The configuration space mtty_create_config_space builds (mtty's IDs, class, BAR, vendor bytes). */
function mttyConfigSpace(): Uint8Array {
  const config = new Uint8Array(256);
  const dv = new DataView(config.buffer);
  dv.setUint32(0x00, 0x3253_4348, true); // vendor 0x4348, device 0x3253
  dv.setUint16(0x04, 0x0001, true); // I/O space on
  dv.setUint16(0x06, 0x0200, true); // no capability list
  config.set([0x10, 0x02, 0x00, 0x07], 0x08); // revision, 16550-compatible serial controller
  dv.setUint32(0x10, 0x1, true); // BAR0: I/O
  dv.setUint32(0x2c, 0x3253_4348, true); // subsystem
  config[0x3d] = 1; // INTA#
  config.set([0x23, 0, 0, 0x80, 0x23, 0, 0, 0, 0x23, 0, 0, 0, 0x23], 0x40); // mtty's vendor-specific bytes
  config.set(new TextEncoder().encode('PCI Serial/UART'), 0x60);
  return config;
}
