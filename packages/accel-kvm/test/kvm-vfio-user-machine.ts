// A VM on KVM with a device served over vfio-user, all real: LinuxHost, guest RAM in a memfd (the
// server maps it for DMA), the device model served by a vfio-user server in this process over a
// Unix socket in a temporary directory, and reached by the VM as `vfio-user-pci`. The VM starts
// paused with `kvm0` realized and the guest's port reports attached; `close()` ends the VM,
// the server and the directory, in that order.

import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LinuxHost, Vmm, type VmmPlugin } from '@vmmkit/core';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { createModel, type SimPciModel } from '@vmmkit/sim';
import { serveSocket, type SocketServer } from '@vmmkit/vfio-user-server';
import { kvmPlugin, type KvmAccel } from '../src/index.js';
import { GuestReports } from './kvm-rig.js';

export interface KvmVfioUserMachineOptions {
  /** The model the server serves: a built-in one by name (default 'nic'), or one made already. */
  readonly model?: 'nic' | 'edu' | SimPciModel;
  /** Guest RAM at 0 (default 8 MiB). */
  readonly ramBytes?: bigint;
  /** Options of the kvm device after `kvm,id=kvm0` (e.g. `irqchip=off`). */
  readonly kvmOptions?: string;
  /** More plugins (the migration plugin, say). */
  readonly plugins?: readonly VmmPlugin[];
  /** Called with the model before it is served (to wrap its accessors, say). */
  readonly beforeServing?: (model: SimPciModel) => void;
}

export interface KvmVfioUserMachine {
  readonly host: LinuxHost;
  readonly vmm: Vmm;
  readonly accel: KvmAccel;
  /** The device as the VM has it (`dev0`). */
  readonly device: VfioPciDevice;
  /** The server and the model it serves (in this process). */
  readonly server: SocketServer;
  readonly model: SimPciModel;
  readonly reports: GuestReports;
  /** The VM, then the server, then the socket's directory; throws the first failure. */
  close(): Promise<void>;
}

/** Start the server, the VM (paused, `kvm0` realized) and the device (`dev0`). */
export async function kvmVfioUserMachine(o: KvmVfioUserMachineOptions = {}): Promise<KvmVfioUserMachine> {
  const host = new LinuxHost();
  const dir = mkdtempSync(join(tmpdir(), 'vmmkit-kvm-vu-'));
  const model = typeof o.model === 'object' ? o.model : createModel({ model: o.model ?? 'nic', bdf: '0000:00:05.0' });
  o.beforeServing?.(model);
  const undo: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const unwind = async (): Promise<void> => {
    let first: unknown;
    for (const step of undo.splice(0).reverse()) {
      try {
        await step();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  };
  try {
    const server = serveSocket(join(dir, 'device.sock'), { model, host });
    undo.push(() => server.close());
    const vmm = await Vmm.create({
      host, plugins: [kvmPlugin(), vfioUserPlugin(), ...(o.plugins ?? [])], memory: [{ gpa: 0n, size: o.ramBytes ?? 8n << 20n, name: 'low' }], memoryBacking: 'memfd',
    });
    undo.push(() => vmm.close());
    vmm.pause('setup');
    const accel = (await vmm.addDevice(`kvm,id=kvm0${o.kvmOptions ? `,${o.kvmOptions}` : ''}`)) as KvmAccel;
    const device = (await vmm.addDevice(`vfio-user-pci,socket=${server.path},id=dev0`)) as VfioPciDevice;
    const reports = new GuestReports();
    reports.attach(accel.io);
    return { host, vmm, accel, device, server, model, reports, close: unwind };
  } catch (e) {
    await unwind().catch(() => undefined);
    throw e;
  }
}

/** The slot of bus 0 that `device` is in. */
export function slotOf(vmm: Vmm, device: VfioPciDevice): number {
  for (let slot = 1; slot < 32; slot++) if (vmm.pciBus.function(slot) === device) return slot;
  throw new Error(`${device.id} is not on bus 0`);
}
