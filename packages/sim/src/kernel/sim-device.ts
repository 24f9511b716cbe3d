// A device of the simulated machine as the kernel holds it: its model, where it sits (IOMMU,
// group, cdev), and its DMA path through whatever IO page table it is attached to.

import {
  PCI_COMMAND, PCI_COMMAND_MASTER, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import type { SimDeviceConfig } from '../config.js';
import { SimDmaFault, type DmaTarget } from '../iommu/dma-target.js';
import type { SimDeviceBus, SimIrq, SimPciModel } from '../devices/pci-model.js';
import type { UserSpan } from '../memory/user-memory.js';
import type { SimGroup } from './sim-group.js';
import type { SimIommu } from './sim-iommu.js';


const MIGRATION_FLAGS = { STOP_COPY: VFIO_MIGRATION_STOP_COPY, P2P: VFIO_MIGRATION_P2P, PRE_COPY: VFIO_MIGRATION_PRE_COPY };

export class SimDevice implements SimDeviceBus {
  /** The device's name: its BDF, or its UUID for an mdev. */
  readonly name: string;
  readonly mdev: boolean;
  /** Bound to vfio-pci (or the mdev's vfio driver), so it can be opened. */
  readonly vfioBound: boolean;
  /** VFIO_MIGRATION_* flags; 0 when the device cannot migrate. */
  readonly migrationFlags: number;
  /** Whether the device supports DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_*). */
  readonly dmaLogging: boolean;
  readonly resettable: boolean;
  /** The IO page table DMA goes through; set by whichever API attaches the device. */
  dmaTarget: DmaTarget | undefined;
  /** Told of every completed device write: device DMA logging listens here. */
  readonly writeObservers = new Set<(iova: bigint, length: number) => void>();
  /** Where raised interrupts go (vfio-pci's IRQ setup); interrupts nobody configured are lost. */
  irqSink: ((irq: SimIrq) => void) | undefined;
  /** Where INTx de-assertion goes. */
  intxLowerSink: (() => void) | undefined;
  /** DMA the device itself started and the IOMMU refused, newest last. */
  readonly faults: SimDmaFault[] = [];

  constructor(
    readonly config: SimDeviceConfig,
    readonly model: SimPciModel,
    readonly iommu: SimIommu | undefined,
    readonly group: SimGroup,
    /** N of /dev/vfio/devices/vfio<N>, for vfio-bound devices. */
    readonly cdev: number | undefined,
    private readonly clock: () => number,
  ) {
    this.name = (config.bdf ?? config.uuid)!;
    this.mdev = config.uuid !== undefined;
    this.vfioBound = (config.driver ?? 'vfio-pci') === 'vfio-pci';
    this.migrationFlags = (config.migration?.flags ?? []).reduce((f, name) => f | MIGRATION_FLAGS[name], 0);
    this.dmaLogging = config.migration?.dmaLogging ?? false;
    this.resettable = config.resettable ?? true;
    group.devices.push(this);
    model.connect(this);
  }

  /** Bus Master Enable in the device's PCI command register. */
  get busMaster(): boolean {
    return (new DataView(this.model.config.buffer, this.model.config.byteOffset).getUint16(PCI_COMMAND, true) &
      PCI_COMMAND_MASTER) !== 0;
  }

  dmaWrite(iova: bigint, data: Uint8Array): void {
    const spans = this.#translate(iova, data.byteLength, true);
    let done = 0;
    for (const s of spans) {
      s.backing.write(s.offset, data.subarray(done, done + s.length));
      done += s.length;
    }
    this.dmaTarget!.recordWrite(iova, data.byteLength);
    for (const observe of this.writeObservers) observe(iova, data.byteLength);
  }

  dmaRead(iova: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    for (const s of this.#translate(iova, length, false)) {
      s.backing.read(s.offset, out.subarray(done, done + s.length));
      done += s.length;
    }
    return out;
  }

  raiseIrq(irq: SimIrq): void {
    this.irqSink?.(irq);
  }

  lowerIntx(): void {
    this.intxLowerSink?.();
  }

  now(): number {
    return this.clock();
  }

  #translate(iova: bigint, length: number, write: boolean): readonly UserSpan[] {
    const fault = (reason: string): never => {
      throw new SimDmaFault(this.name, iova, length, write, reason);
    };
    if (!this.busMaster) fault('Bus Master Enable is clear in the PCI command register');
    if (!this.dmaTarget) fault('the device is not attached to any IO page table');
    if (length <= 0) fault('empty DMA');
    const t = this.dmaTarget!.translate(iova, length, write);
    if ('fault' in t) fault(`${t.fault} (${this.dmaTarget!.description})`);
    return (t as { spans: readonly UserSpan[] }).spans;
  }
}
