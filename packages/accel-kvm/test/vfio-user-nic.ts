// A nic served over vfio-user by a process of its own (test/fixtures/serve-nic.mjs), for KVM
// tests on LinuxHost, and where its MSI-X table sits. Kept small: a fuller LinuxHost + KVM +
// vfio-user rig is on its way (kvm-vfio-user-machine.ts) and may take this over.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';

export const PCI_CAP_ID_MSIX = 0x11;

/** The nic's MSI-X table and PBA (BAR and offset), as a guest reads them from the capability. */
export async function msixLayout(nic: VfioPciDevice): Promise<{ tableBar: number; table: number; pbaBar: number; pba: number }> {
  const cap = await msixCap(nic);
  const table = await nic.configRead(cap + 4, 4);
  const pba = await nic.configRead(cap + 8, 4);
  return { tableBar: table & 7, table: table & ~7, pbaBar: pba & 7, pba: pba & ~7 };
}

/** The config-space offset of the MSI-X capability. */
export async function msixCap(nic: VfioPciDevice): Promise<number> {
  let cap = await nic.configRead(0x34, 1);
  while (cap && (await nic.configRead(cap, 1)) !== PCI_CAP_ID_MSIX) cap = await nic.configRead(cap + 1, 1);
  return cap;
}

/** Start the nic's server at `path`; resolves once it listens. */
export async function startServer(path: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures/serve-nic.mjs'), path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the nic server exited with ${code}: ${stderr}`)));
  });
  return child;
}

/** Resolves once `child` has exited. */
export const exited = (child: ChildProcess): Promise<unknown> =>
  new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('close', r)));

