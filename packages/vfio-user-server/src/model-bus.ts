// The bus a served model sees (SimDeviceBus): DMA through the connected client's windows (a
// memory copy for file-backed ones, DMA_WRITE messages for the rest), interrupts to its
// eventfds, real time in milliseconds, and every completed DMA write reported for dirty logging.

import { PCI_COMMAND, PCI_COMMAND_MASTER } from '@vmmkit/core/uapi';
import { SimDmaFault, type SimDeviceBus, type SimIrq, type SimPciModel } from '@vmmkit/sim';
import type { DmaWindows } from './dma-windows.js';
import type { DeviceInterrupts } from './interrupts.js';

/** What the bus reaches of the current connection. */
export interface BusClient {
  readonly dma: DmaWindows;
  readonly irqs: DeviceInterrupts;
  /** Send a posted DMA_WRITE for a window without a file. */
  dmaWriteMessage(iova: bigint, data: Uint8Array): void;
}

/** A model's bus; `client` is the connection of the moment (none between clients). */
export class ModelBus implements SimDeviceBus {
  readonly faults: SimDmaFault[] = [];
  readonly writeObservers = new Set<(iova: bigint, length: number) => void>();
  client: BusClient | undefined;
  readonly #start = performance.now();

  constructor(private readonly model: SimPciModel) {}

  now(): number {
    return performance.now() - this.#start;
  }

  dmaWrite(iova: bigint, data: Uint8Array): void {
    const { client, target } = this.#resolve(iova, data.byteLength, true);
    if (target.window.mapping) target.window.mapping.view(target.offset, data.byteLength).set(data);
    else client.dmaWriteMessage(iova, data);
    for (const observe of this.writeObservers) observe(iova, data.byteLength);
  }

  dmaRead(iova: bigint, length: number): Uint8Array {
    const { target } = this.#resolve(iova, length, false);
    if (!target.window.mapping) {
      // The model's bus is synchronous and a DMA_READ message is not: such windows fault.
      throw this.#fault(iova, length, false, 'the window has no file; reads through DMA_READ messages are not offered to synchronous models');
    }
    return target.window.mapping.view(target.offset, length).slice();
  }

  raiseIrq(irq: SimIrq): void {
    this.client?.irqs.raise(irq);
  }

  lowerIntx(): void {
    this.client?.irqs.lowerIntx();
  }

  #resolve(iova: bigint, length: number, write: boolean) {
    const config = this.model.config;
    if (!(config[PCI_COMMAND]! & PCI_COMMAND_MASTER)) throw this.#fault(iova, length, write, 'bus mastering is off');
    const client = this.client;
    if (!client) throw this.#fault(iova, length, write, 'no client is connected');
    const target = client.dma.find(iova, length);
    if (!target) throw this.#fault(iova, length, write, 'no DMA window covers the range');
    if (write ? !target.window.writable : !target.window.readable) throw this.#fault(iova, length, write, `the window is not ${write ? 'writable' : 'readable'}`);
    return { client, target };
  }

  #fault(iova: bigint, length: number, write: boolean, reason: string): SimDmaFault {
    return new SimDmaFault(this.model.kind, iova, length, write, reason);
  }
}
