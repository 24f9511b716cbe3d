// Raw access to a vfio-pci device's configuration space (the VFIO config region), for what every
// user of a PCI device needs before DMA: turning Bus Master Enable on, which vfio-pci clears on open.

import { VfioError } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../uapi/pci-regs.js';
import { VFIO_PCI_CONFIG_REGION_INDEX } from '../uapi/vfio.js';
import { getRegionInfo } from './region-info.js';
import { vfioCall } from './vfio-call.js';
import type { VfioDeviceIo } from './vfio-device-io.js';


/** Read `size` bytes (1, 2 or 4) of config space at `offset`, little-endian. */
export function readPciConfig(host: HostKernel, fd: number, device: string, offset: number, size: 1 | 2 | 4): number {
  const region = getRegionInfo(host, fd, VFIO_PCI_CONFIG_REGION_INDEX, device);
  const buf = new Uint8Array(size);
  const n = vfioCall(`read config space at 0x${offset.toString(16)}`, device, () => host.pread(fd, buf, region.offset + BigInt(offset)));
  if (n !== size) throw new VfioError(`read config space at 0x${offset.toString(16)}`, device, { errno: 'EIO', detail: `a short read (${n} of ${size} bytes)` });
  const v = new DataView(buf.buffer);
  return size === 1 ? v.getUint8(0) : size === 2 ? v.getUint16(0, true) : v.getUint32(0, true);
}

/** Write `size` bytes (1, 2 or 4) of config space at `offset`, little-endian. */
export function writePciConfig(host: HostKernel, fd: number, device: string, offset: number, size: 1 | 2 | 4, value: number): void {
  const region = getRegionInfo(host, fd, VFIO_PCI_CONFIG_REGION_INDEX, device);
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  if (size === 1) v.setUint8(0, value);
  else if (size === 2) v.setUint16(0, value, true);
  else v.setUint32(0, value, true);
  const n = vfioCall(`write config space at 0x${offset.toString(16)}`, device, () => host.pwrite(fd, buf, region.offset + BigInt(offset)));
  if (n !== size) throw new VfioError(`write config space at 0x${offset.toString(16)}`, device, { errno: 'EIO', detail: `a short write (${n} of ${size} bytes)` });
}

/** Turn Bus Master Enable (and memory decoding) on or off in the command register. */
export function setBusMaster(host: HostKernel, fd: number, device: string, on: boolean): void {
  const command = readPciConfig(host, fd, device, PCI_COMMAND, 2);
  const next = on ? command | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY : command & ~PCI_COMMAND_MASTER;
  if (next !== command) writePciConfig(host, fd, device, PCI_COMMAND, 2, next);
}

/**
 * Turn Bus Master Enable (and memory decoding) on or off through the device's I/O, whatever
 * serves it (the kernel's device fd, or vfio-user messages).
 */
export async function setBusMasterThrough(io: VfioDeviceIo, on: boolean): Promise<void> {
  const bytes = await io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), 2);
  const command = bytes[0]! | (bytes[1]! << 8);
  const next = on ? command | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY : command & ~PCI_COMMAND_MASTER;
  if (next !== command) await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([next & 0xff, next >> 8]));
}
