// The kernel backends' device I/O (QEMU's vfio_device_io_ops_ioctl): ioctls, pread and pwrite
// on the device fd. Each call completes synchronously; the Promise is the seam's shape.

import { VfioError } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import { withKernelBuffer } from '../memory/kernel-buffer.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS, VFIO_REGION_INFO_FLAG_MMAP, vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range, vfio_device_feature_dma_logging_report, vfio_device_feature_mig_state, vfio_irq_info,
  vfio_irq_set,
} from '../uapi/vfio.js';
import { deviceFeature } from './device-feature.js';
import { getDeviceInfo } from './device-info.js';
import { KernelMigDataSession } from './kernel-mig-data.js';
import type { VfioMigDataSession } from './mig-data-session.js';
import { getRegionInfo, type VfioRegionInfo } from './region-info.js';
import { vfioCall } from './vfio-call.js';
import type { VfioDevice, VfioDeviceInfo } from './vfio-device.js';
import type { DmaLoggingRange, VfioDeviceIo, VfioIrqInfo, VfioIrqSet } from './vfio-device-io.js';

/** Device I/O over `device.fd`, read at each call (the backend opens and closes the fd). */
export class VfioKernelDeviceIo implements VfioDeviceIo {
  /** Where each region starts in the device fd, as region info reported it. */
  readonly #regionOffsets = new Map<number, bigint>();

  constructor(private readonly host: HostKernel, private readonly device: VfioDevice) {}

  async deviceInfo(): Promise<VfioDeviceInfo> {
    return getDeviceInfo(this.host, this.device.fd, this.device.name);
  }

  async regionInfo(index: number): Promise<VfioRegionInfo> {
    return this.#regionInfo(index);
  }

  async regionRead(index: number, offset: bigint, count: number): Promise<Uint8Array> {
    const step = `read region ${index} at 0x${offset.toString(16)}`;
    const buf = new Uint8Array(count);
    const n = vfioCall(step, this.device.name, () => this.host.pread(this.device.fd, buf, this.#offsetOf(index) + offset));
    if (n !== count) throw new VfioError(step, this.device.name, { detail: `read ${n} of ${count} bytes`, errno: 'EIO' });
    return buf;
  }

  async regionWrite(index: number, offset: bigint, data: Uint8Array): Promise<void> {
    const step = `write region ${index} at 0x${offset.toString(16)}`;
    const n = vfioCall(step, this.device.name, () => this.host.pwrite(this.device.fd, data, this.#offsetOf(index) + offset));
    if (n !== data.byteLength) throw new VfioError(step, this.device.name, { detail: `wrote ${n} of ${data.byteLength} bytes`, errno: 'EIO' });
  }

  async irqInfo(index: number): Promise<VfioIrqInfo> {
    const arg = vfio_irq_info.encode({ index });
    vfioCall(`get the info of IRQ index ${index}`, this.device.name, () => this.host.ioctl(this.device.fd, VFIO_DEVICE_GET_IRQ_INFO, arg));
    return { index, flags: vfio_irq_info.get(arg, 'flags'), count: vfio_irq_info.get(arg, 'count') };
  }

  async setIrqs(set: VfioIrqSet): Promise<void> {
    const fds = set.eventfds ?? [];
    const data = new Uint8Array(fds.length * 4);
    const view = new DataView(data.buffer);
    fds.forEach((fd, i) => view.setInt32(i * 4, fd, true));
    const arg = vfio_irq_set.encode({ flags: set.flags, index: set.index, start: set.start, count: set.count, data });
    vfioCall(`set IRQ index ${set.index} (${set.start}+${set.count})`, this.device.name, () => this.host.ioctl(this.device.fd, VFIO_DEVICE_SET_IRQS, arg));
  }

  async reset(): Promise<void> {
    vfioCall('reset the device', this.device.name, () => this.host.ioctl(this.device.fd, VFIO_DEVICE_RESET));
  }

  async feature(flags: number, payload?: Uint8Array): Promise<Uint8Array> {
    return vfioCall(`use device feature ${flags & 0xffff}`, this.device.name, () => deviceFeature(this.host, this.device.fd, flags, payload));
  }

  /**
   * The kernel walks the arcs and returns the data fd of the session the last arc started (or
   * -1); that fd becomes the session's. The error is the ioctl's HostError, for the caller to
   * recover and name.
   */
  async setMigState(state: number): Promise<VfioMigDataSession | undefined> {
    const out = deviceFeature(
      this.host, this.device.fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
      vfio_device_feature_mig_state.encode({ device_state: state, data_fd: -1 }),
    );
    const fd = vfio_device_feature_mig_state.get(out, 'data_fd');
    return fd === -1 ? undefined : new KernelMigDataSession(this.host, fd, this.device.name);
  }

  /** The range table goes to the kernel through a user pointer to a copy of it. */
  async dmaLoggingStart(ranges: readonly DmaLoggingRange[], pageSize: number): Promise<void> {
    const size = vfio_device_feature_dma_logging_range.size;
    const table = new Uint8Array(ranges.length * size);
    ranges.forEach((r, i) => table.set(vfio_device_feature_dma_logging_range.encode(r), i * size));
    await withKernelBuffer(this.host, table, (addr) =>
      vfioCall('start device DMA logging', this.device.name, () =>
        deviceFeature(this.host, this.device.fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
          vfio_device_feature_dma_logging_control.encode({ page_size: BigInt(pageSize), num_ranges: ranges.length, ranges: addr }))),
    );
  }

  async dmaLoggingStop(): Promise<void> {
    vfioCall('stop device DMA logging', this.device.name, () =>
      deviceFeature(this.host, this.device.fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP));
  }

  /** The kernel sets bits through a user pointer to `bitmap` (mapped, or a bounce buffer copied back). */
  async dmaLoggingReport(iova: bigint, length: bigint, pageSize: number, bitmap: Uint8Array): Promise<void> {
    await withKernelBuffer(this.host, bitmap, (addr) =>
      vfioCall('read the device DMA log', this.device.name, () =>
        deviceFeature(this.host, this.device.fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
          vfio_device_feature_dma_logging_report.encode({ iova, length, page_size: BigInt(pageSize), bitmap: addr }))),
    );
  }

  #regionInfo(index: number): VfioRegionInfo {
    const info = getRegionInfo(this.host, this.device.fd, index, this.device.name);
    this.#regionOffsets.set(index, info.offset);
    return info.flags & VFIO_REGION_INFO_FLAG_MMAP ? { ...info, mmapFd: this.device.fd } : info;
  }

  #offsetOf(index: number): bigint {
    return this.#regionOffsets.get(index) ?? this.#regionInfo(index).offset;
  }
}
