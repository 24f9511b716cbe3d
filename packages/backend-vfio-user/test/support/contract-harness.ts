// The VfioIommuBackend contract's harness for the vfio-user backend: edu devices served by
// @vmmkit/vfio-user-server, in this process on SimHost (an in-process transport pair) or in
// processes of their own on LinuxHost (real Unix sockets), guest RAM in memfds, and DMA made by
// edu's own engine through the device's I/O (REGION_WRITE of its registers), as a guest driver
// makes it. Each device() is a fresh connection; the backend given to the suite closes it after
// detach, so that the census comes back to its baseline.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArgumentError, LinuxHost, VmmEventBus, type HostKernel, type VfioDevice, type VfioIommuBackend } from '@vmmkit/core';
import { contractMemory, eduDmaWrite, type VfioIommuContractHarness } from '@vmmkit/core/testing';
import { InProcessTransport, SocketTransport, type VfioUserTransport } from '@vmmkit/core/vfio-user';
import { SimHost, createModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { VfioUserDevice, VfioUserIommuBackend, VfioUserProxy } from '@vmmkit/backend-vfio-user';

const RAM = 4n << 20n;
/** edu stages what it copies in the last page of guest RAM (the backend maps guest RAM only). */
const STAGING_GPA = RAM - 4096n;
const fixture = join(import.meta.dirname, '../fixtures/serve-model.mjs');

/** Where the servers are: connect() gives a transport to server `index`. */
interface Servers {
  readonly count: number;
  connect(index: number): VfioUserTransport;
  close(): Promise<void>;
}

function inProcessServers(host: SimHost, count: number): Servers {
  const servers = Array.from({ length: count }, (_, i) => new VfioUserServer({ model: createModel({ model: 'edu', bdf: `0000:00:0${3 + i}.0` }), host, tickMs: 0 }));
  return {
    count,
    connect(index) {
      const [client, server] = InProcessTransport.pair(host);
      servers[index]!.serve(server);
      return client;
    },
    close: async () => void (await Promise.all(servers.map((s) => s.close()))),
  };
}

async function processServers(count: number): Promise<Servers> {
  const dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-contract-'));
  const children: ChildProcess[] = [];
  const paths: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const path = join(dir, `edu${i}.sock`);
      const child = spawn(process.execPath, [fixture, 'edu', path], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', (code) => reject(new ArgumentError(`the edu server exited with ${code}`)));
      });
      paths.push(path);
    }
  } catch (e) {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    count,
    connect: (index) => SocketTransport.connect(paths[index]!),
    async close() {
      await Promise.all(children.map((c) => new Promise((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve(undefined);
        c.once('close', resolve);
        c.kill('SIGTERM');
      })));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The vfio-user backend, closing a device's connection once it is detached (the device type does the same at unrealize). */
function closingBackend(host: HostKernel, events: VmmEventBus): VfioIommuBackend {
  const inner = new VfioUserIommuBackend(host, events);
  return {
    kind: inner.kind,
    attachDevice: (name, device, space) => inner.attachDevice(name, device, space),
    async detachDevice(device) {
      try {
        await inner.detachDevice(device);
      } finally {
        if (device instanceof VfioUserDevice) device.proxy.close();
      }
    },
  };
}

/** A fresh harness: `where` chooses in-process servers on SimHost, or server processes on LinuxHost. */
export async function vfioUserContractHarness(where: 'in-process' | 'processes'): Promise<VfioIommuContractHarness> {
  const host: HostKernel = where === 'in-process' ? new SimHost() : new LinuxHost();
  const servers = where === 'in-process' ? inProcessServers(host as SimHost, 2) : await processServers(2);
  const { memory, space, events, release } = await contractMemory(host, [{ gpa: 0n, size: RAM }], { backing: 'memfd' });
  const ram = memory.blocks[0]!;
  const open = new Map<number, VfioUserDevice>();
  return {
    host,
    backend: closingBackend(host, events),
    memory, space, events,
    deviceCount: servers.count,
    device(index): VfioDevice {
      if (index >= servers.count) throw new ArgumentError(`the harness has ${servers.count} servers, not ${index + 1}`);
      // One client per server: the previous connection to this one goes first.
      open.get(index)?.proxy.close();
      const name = `vfio-user-edu${index}`;
      const device = new VfioUserDevice(name, new VfioUserProxy({ device: name, transport: servers.connect(index), host, timeoutMs: 2000 }), host);
      open.set(index, device);
      return device;
    },
    async dma(device, iova, data) {
      await eduDmaWrite(device.io, device.name, iova, data, { iova: STAGING_GPA, bytes: ram.mapping.view(Number(STAGING_GPA), 4096) });
    },
    census: where === 'in-process' ? () => (host as SimHost).census() : () => readdirSync('/proc/self/fd').length,
    async dispose() {
      for (const d of open.values()) d.proxy.close();
      await servers.close();
      await release();
    },
  };
}
