// Shared rig for the VfioMigration tests: a VMM on SimHost with a migrating nic realized through
// vfio-pci on either backend, the events it emits, traffic, and draining the data fd.

import { expect } from 'vitest';
import { Vmm, type VfioDevice } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { NIC_RX_RING_BASE, SimHost, type SimMigrationFlag } from '@vmmkit/sim';
import { startNicRing } from '@vmmkit/sim/testing';
import { VfioMigration, type DeviceStateChange } from '../src/index.js';

export const NIC = '0000:00:05.0';
export const MDEV = 'c0ffee00-0000-4000-8000-00000000d005';
export const RING = 0x10_0000n;

export type Backend = 'legacy' | 'iommufd';
export const BACKENDS: readonly Backend[] = ['legacy', 'iommufd'];

/** Migration flag sets the tests run on. */
export const FLAGS = {
  full: ['STOP_COPY', 'P2P', 'PRE_COPY'],
  noPrecopy: ['STOP_COPY', 'P2P'],
  noP2p: ['STOP_COPY', 'PRE_COPY'],
  stopCopyOnly: ['STOP_COPY'],
} as const satisfies Record<string, readonly SimMigrationFlag[]>;

export interface RigOptions {
  readonly flags?: readonly SimMigrationFlag[];
  readonly chunkSize?: number;
  /** VFIO_DEVICE_FLAGS_RESET: false makes every reset fail. */
  readonly resettable?: boolean;
  /** Realize the nic as a mediated device instead of a PCI function. */
  readonly mdev?: boolean;
}

/** One VMM with the nic realized and a VfioMigration on it. */
export interface Rig {
  readonly host: SimHost;
  readonly vmm: Vmm;
  readonly nic: VfioPciDevice;
  readonly vfio: VfioDevice;
  readonly mig: VfioMigration;
  /** The kernel's name of the device (BDF or UUID), as SimHost.deviceState takes it. */
  readonly name: string;
  /** 'migration:device-state' events, as `FROM>TO`. */
  readonly changes: string[];
  readonly warnings: string[];
  /** The census once the device was realized: what must be left after every migration path. */
  readonly realized: ReturnType<SimHost['census']>;
  /** cleanup(), then prove no data fd or other fd is left, then close the VMM and prove it released everything. */
  close(): Promise<void>;
}

export async function rig(backend: Backend, options: RigOptions = {}): Promise<Rig> {
  const flags = options.flags ?? FLAGS.full;
  const device = options.mdev ? { uuid: MDEV } : { bdf: NIC, group: 5 };
  const host = new SimHost({
    iommus: [{ id: 'iommu0', dirtyTracking: true, awBits: 39 }],
    devices: [{ ...device, model: 'nic', migration: { flags, dmaLogging: true }, resettable: options.resettable ?? true }],
  });
  const empty = host.census();
  const vmm = await Vmm.create({
    host, plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 16n << 20n }],
  });
  if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
  const where = options.mdev ? `sysfsdev=/sys/bus/mdev/devices/${MDEV}` : `host=${NIC}`;
  const nic = (await vmm.addDevice(`vfio-pci,${where}${backend === 'iommufd' ? ',iommufd=iommufd0' : ''}`)) as VfioPciDevice;
  const changes: string[] = [];
  const warnings: string[] = [];
  vmm.events.on('migration:device-state', (e: DeviceStateChange) => changes.push(`${e.from}>${e.to}`));
  vmm.events.on('vfio:warning', (e) => warnings.push(e.message));
  const mig = new VfioMigration(nic.vfio, vmm.events, { chunkSize: options.chunkSize });
  const realized = host.census();
  const close = async () => {
    mig.cleanup();
    expect(mig.dataFd).toBe(-1);
    expect(host.census()).toEqual(realized);
    await vmm.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(host.census()).toEqual(empty);
  };
  return { host, vmm, nic, vfio: nic.vfio, mig, name: options.mdev ? MDEV : NIC, changes, warnings, realized, close };
}

/** Receive 1000 packets per second into a 64-slot ring in guest memory. */
export async function startTraffic(nic: VfioPciDevice): Promise<void> {
  await startNicRing(nic, RING, { slots: 64, packetSize: 256, packetsPerSecond: 1000 });
}

/** Read chunks until the data fd says 'empty' or 'end'; returns copies of the chunks and which it said. */
export async function drain(mig: VfioMigration): Promise<{ chunks: Uint8Array[]; bytes: number; until: 'empty' | 'end' }> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const got = await mig.readChunk();
    if (got === 'empty' || got === 'end') return { chunks, bytes: chunks.reduce((n, c) => n + c.byteLength, 0), until: got };
    chunks.push(got.slice()); // the view is only valid until the next read
  }
}

/** The chunks as one stream. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Whether the nic's registers still hold the programmed ring (a reset clears them). */
export async function ringProgrammed(nic: VfioPciDevice): Promise<boolean> {
  return (await nic.barRead(0, NIC_RX_RING_BASE, 8)) === RING;
}
