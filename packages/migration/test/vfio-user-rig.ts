// A vfio-user nic for VfioMigration tests below the VM: guest RAM in memfds, a server serving the
// sim's nic over an in-process pair (on the test's SimHost, so its host calls are counted and can
// fail), and the client's device attached through VfioUserIommuBackend and probed for migration.

import { AddressSpace, GuestMemory, VfioAddressSpace, VmmEventBus, probeMigrationSupport, type MemorySection, type VfioContainerBase } from '@vmmkit/core';
import { InProcessTransport, type VfioUserTransport } from '@vmmkit/core/vfio-user';
import { NIC_CTRL, NIC_CTRL_RX_EN, NIC_RATE_PPS, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE, NIC_RX_RING_SIZE, SimHost, createModel } from '@vmmkit/sim';
import { PCI_COMMAND, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX } from '@vmmkit/core/uapi';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { VfioUserDevice, VfioUserIommuBackend, VfioUserProxy, type VfioUserProxyOptions } from '@vmmkit/backend-vfio-user';
import type { VfioUserCapabilities } from '@vmmkit/core/vfio-user';

/** Guest RAM of the rig: 1 MiB at GPA 0 (256 pages). */
export const RAM_SIZE = 0x10_0000n;
/** Where the nic's receive ring lives: 64 slots of 256 bytes from here cover pages 0x40..0x43. */
export const RING = 0x4_0000n;

export interface VfioUserNic {
  readonly host: SimHost;
  readonly server: VfioUserServer;
  readonly memory: GuestMemory;
  readonly space: VfioAddressSpace;
  readonly proxy: VfioUserProxy;
  readonly device: VfioUserDevice;
  readonly backend: VfioUserIommuBackend;
  readonly events: VmmEventBus;
  readonly container: VfioContainerBase;
  /** The server's end of the pair (close it to kill the server's side of the connection). */
  readonly serverEnd: VfioUserTransport;
  /** Advance the nic's clock: at 10,000 packets per second, 1 ms is 10 packets. */
  advance(ms: number): void;
  /** Detach, close the connection and the server, free guest RAM (carrying on through failures). */
  close(): Promise<void>;
}

export interface VfioUserNicOptions {
  readonly name?: string;
  readonly model?: string;
  /** VFIO_MIGRATION_* flags the server offers (0: none). Default: the model's. */
  readonly migrationFlags?: number;
  /** What the client offers in VERSION. */
  readonly capabilities?: VfioUserCapabilities;
  readonly proxy?: Partial<VfioUserProxyOptions>;
}

/**
 * Make the nic, attach it and probe it. Each resource is released again when a later step
 * fails, so a failed make leaves nothing behind.
 */
export async function makeVfioUserNic(host: SimHost, options: VfioUserNicOptions = {}): Promise<VfioUserNic> {
  const name = options.name ?? 'vu-nic';
  const undo: (() => unknown)[] = [];
  try {
    const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: RAM_SIZE, name: 'ram' }], { backing: 'memfd' });
    undo.push(() => memory.free());
    const as = new AddressSpace('system');
    const section: MemorySection = { kind: 'ram', start: 0n, size: RAM_SIZE, block: memory.blocks[0]!, offset: 0n, readonly: false };
    await as.addSection(section);
    const space = new VfioAddressSpace(as, memory);
    const server = new VfioUserServer({
      model: createModel({ model: options.model ?? 'nic', bdf: '0000:00:05.0' }), host, tickMs: 0,
      ...(options.migrationFlags !== undefined ? { migrationFlags: options.migrationFlags } : {}),
    });
    undo.push(() => server.close());
    const [clientEnd, serverEnd] = InProcessTransport.pair(host);
    server.serve(serverEnd);
    const proxy = new VfioUserProxy({
      device: name, transport: clientEnd, host, timeoutMs: 500, ...(options.capabilities ? { capabilities: options.capabilities } : {}), ...options.proxy,
    });
    undo.push(() => proxy.close());
    const device = new VfioUserDevice(name, proxy, host);
    const events = new VmmEventBus();
    const backend = new VfioUserIommuBackend(host, events);
    const container = await backend.attachDevice(name, device, space);
    undo.push(() => backend.detachDevice(device));
    await probeMigrationSupport(device);
    const model = server.model;
    return {
      host, server, memory, space, proxy, device, backend, events, container, serverEnd,
      advance: (ms) => model.advance!(ms),
      close: () => unwind(undo),
    };
  } catch (e) {
    await unwind(undo);
    throw e;
  }
}

async function unwind(undo: (() => unknown)[]): Promise<void> {
  for (const step of undo.splice(0).reverse()) {
    try {
      await step();
    } catch {
      // Carry on: each step releases what it owns even when it reports a failure.
    }
  }
}

const le = (value: bigint, bytes: number): Uint8Array => {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return out;
};

/** Bus mastering on, then the nic receives 256-byte packets into a ring of `slots` (64: pages 0x40..0x43) at RING. */
export async function startNicTraffic(nic: { readonly device: VfioUserDevice }, slots = 64): Promise<void> {
  const io = nic.device.io;
  await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x06, 0]));
  const bar0 = (reg: number, value: bigint, bytes = 4) => io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(reg), le(value, bytes));
  await bar0(NIC_RX_RING_BASE, RING, 8);
  await bar0(NIC_RX_RING_SIZE, BigInt(slots));
  await bar0(NIC_RX_PKT_SIZE, 256n);
  await bar0(NIC_RATE_PPS, 10_000n);
  await bar0(NIC_CTRL, BigInt(NIC_CTRL_RX_EN));
}

/** The guest pages (GPA / 4 KiB) marked in the memory's dirty log. */
export function dirtyPages(memory: GuestMemory): number[] {
  const pages: number[] = [];
  memory.blocks[0]!.dirty?.forEachRun((start, length) => {
    for (let p = start; p < start + length; p++) pages.push(p);
  });
  return pages;
}
