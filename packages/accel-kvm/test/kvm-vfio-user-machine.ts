// The rig of the KVM + vfio-user tests, all real: a VM on KVM on LinuxHost (guest RAM in a memfd,
// the server maps it for DMA) with a device reached as `vfio-user-pci`, served either by a
// vfio-user server in this process (the model at hand to wrap or read) or, given a socket, by a
// server process of its own (startNicServer: the nic, its interrupt eventfds passed over
// SCM_RIGHTS, so real eventfds KVM takes as irqfds; its device state on request). Also where the
// device's MSI-X table sits, as a guest finds it.

import 'reflect-metadata';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LinuxHost, Vmm, type VmmPlugin } from '@vmmkit/core';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { createModel, type SimPciModel } from '@vmmkit/sim';
import { serveSocket, type SocketServer } from '@vmmkit/vfio-user-server';
import { kvmPlugin, type IoBus, type KvmAccel } from '../src/index.js';
import { GuestReports } from './kvm-rig.js';

/** Whatever listens to the guest's ports (GuestReports, NicGuestReports). */
export interface PortReports {
  attach(io: IoBus): void;
}

export interface KvmVfioUserMachineOptions<R extends PortReports> {
  /** The model the in-process server serves: a built-in one by name (default 'nic'), or one made already. */
  readonly model?: 'nic' | 'edu' | SimPciModel;
  /** Called with the model before it is served (to wrap its accessors, say). */
  readonly beforeServing?: (model: SimPciModel) => void;
  /** Connect to the server listening here instead (its owner stops it): no server in this process. */
  readonly socket?: string;
  /** The host (default a new LinuxHost). */
  readonly host?: LinuxHost;
  /** Guest RAM at 0 (default 8 MiB). */
  readonly ramBytes?: bigint;
  /** Options of the kvm device after `kvm,id=kvm0` (e.g. `irqchip=off`). */
  readonly kvmOptions?: string;
  /** More plugins (the migration plugin, say). */
  readonly plugins?: readonly VmmPlugin[];
  /** Called with the VM before its devices are added (to listen to its events, say). */
  readonly beforeDevices?: (vmm: Vmm) => void;
  /** The device's id (default `dev0`). */
  readonly id?: string;
  /** What listens to the guest's ports (default GuestReports). */
  readonly reports?: R;
}

export interface KvmVfioUserMachine<R extends PortReports = GuestReports> {
  readonly host: LinuxHost;
  readonly vmm: Vmm;
  readonly accel: KvmAccel;
  /** The device as the VM has it (`dev0` unless told). */
  readonly device: VfioPciDevice;
  /** The server in this process and the model it serves (none when given a socket). */
  readonly server: SocketServer | undefined;
  readonly model: SimPciModel | undefined;
  readonly reports: R;
  /** The VM, then the server and the socket's directory; throws the first failure. */
  close(): Promise<void>;
}

/** Start the server (unless given a socket), the VM (paused, `kvm0` realized) and the device (`dev0` unless told). */
export async function kvmVfioUserMachine<R extends PortReports = GuestReports>(o: KvmVfioUserMachineOptions<R> = {}): Promise<KvmVfioUserMachine<R>> {
  const host = o.host ?? new LinuxHost();
  const undo: (() => Promise<void> | void)[] = [];
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
    let server: SocketServer | undefined;
    let model: SimPciModel | undefined;
    if (o.socket === undefined) {
      const dir = mkdtempSync(join(tmpdir(), 'vmmkit-kvm-vu-'));
      undo.push(() => rmSync(dir, { recursive: true, force: true }));
      model = typeof o.model === 'object' ? o.model : createModel({ model: o.model ?? 'nic', bdf: '0000:00:05.0' });
      o.beforeServing?.(model);
      const served = serveSocket(join(dir, 'device.sock'), { model, host });
      undo.push(() => served.close());
      server = served;
    }
    const vmm = await Vmm.create({
      host, plugins: [kvmPlugin(), vfioUserPlugin(), ...(o.plugins ?? [])], memory: [{ gpa: 0n, size: o.ramBytes ?? 8n << 20n, name: 'low' }], memoryBacking: 'memfd',
    });
    undo.push(() => vmm.close());
    vmm.pause('setup');
    o.beforeDevices?.(vmm);
    const accel = (await vmm.addDevice(`kvm,id=kvm0${o.kvmOptions ? `,${o.kvmOptions}` : ''}`)) as KvmAccel;
    const device = (await vmm.addDevice(`vfio-user-pci,socket=${o.socket ?? server!.path},id=${o.id ?? 'dev0'}`)) as VfioPciDevice;
    const reports = o.reports ?? (new GuestReports() as PortReports as R);
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

export const PCI_CAP_ID_MSIX = 0x11;

/** The device's MSI-X table and PBA (BAR and offset), as a guest reads them from the capability. */
export async function msixLayout(device: VfioPciDevice): Promise<{ tableBar: number; table: number; pbaBar: number; pba: number }> {
  const cap = await msixCap(device);
  const table = await device.configRead(cap + 4, 4);
  const pba = await device.configRead(cap + 8, 4);
  return { tableBar: table & 7, table: table & ~7, pbaBar: pba & 7, pba: pba & ~7 };
}

/** The config-space offset of the MSI-X capability. */
export async function msixCap(device: VfioPciDevice): Promise<number> {
  let cap = await device.configRead(0x34, 1);
  while (cap && (await device.configRead(cap, 1)) !== PCI_CAP_ID_MSIX) cap = await device.configRead(cap + 1, 1);
  return cap;
}

/**
 * The nic's server, a process of its own: migration's fixture (packages/migration/test/fixtures/
 * serve-nic.mjs, one nic server for the tests of both packages), which answers with its model's
 * device state on request.
 */
const NIC_SERVER = join(import.meta.dirname, '../../migration/test/fixtures/serve-nic.mjs');

/** A nic server process: its device state on request, and how it ends. */
export interface NicServerProcess {
  readonly child: ChildProcess;
  /** The model's device state as the server holds it now. */
  state(): Promise<Buffer>;
  /** The device state when the model last started running (a destination's: the state it loaded). */
  startedState(): Promise<Buffer>;
  /** Stop it (SIGTERM unless told) and wait until it is gone; nothing when it is already. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Start the nic's server at `path`; resolves once it listens. */
export async function startNicServer(path: string): Promise<NicServerProcess> {
  const child = spawn(process.execPath, [NIC_SERVER, path], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => waiting.shift()?.resolve(line));
  child.once('exit', (code, signal) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`the nic server exited (${signal ?? code}): ${stderr}`));
  });
  const next = (): Promise<string> => new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  const ask = async (what: string): Promise<Buffer> => {
    const answer = next();
    child.stdin!.write(`${what}\n`);
    return Buffer.from((await answer).slice(what.length + 1), 'hex');
  };
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await gone;
  };
  const ready = await next().catch(async (e: unknown) => {
    await kill();
    throw e;
  });
  if (ready !== 'ready') {
    await kill();
    throw new Error(`the nic server said ${ready}`);
  }
  return { child, state: () => ask('state'), startedState: () => ask('started'), kill };
}
