// The client on this machine's kernel over a real Unix socket to a server in a second process:
// guest RAM in memfds crosses with DMA_MAP (SCM_RIGHTS) and edu's DMA lands in it, an MSI
// arrives on an eventfd, a server that is killed fails the device (the VM process goes on), and
// this process's fd table and mappings end as they began. Needs the built packages.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AddressSpace, GuestMemory, LinuxHost, VfioAddressSpace, VfioError, VmmEventBus } from '@vmmkit/core';
import {
  EFD_NONBLOCK, PCI_COMMAND, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
} from '@vmmkit/core/uapi';
import { SocketTransport } from '@vmmkit/core/vfio-user';
import { EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_START, EDU_DMA_TO_PCI, EDU_ID } from '@vmmkit/sim';
import { VfioUserDevice, VfioUserIommuBackend, VfioUserProxy } from '@vmmkit/backend-vfio-user';
import { le64, runEduDma } from './support/edu-io.js';

const onLinux = process.platform === 'linux';
const fixture = join(import.meta.dirname, 'fixtures/serve-edu.mjs');
const fds = (): number => readdirSync('/proc/self/fd').length;
const memfdMappings = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:guest-ram')).length;

async function startServer(path: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fixture, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  return child;
}

describe.skipIf(!onLinux)('vfio-user client over a Unix socket to a server process (LinuxHost)', () => {
  const host = onLinux ? new LinuxHost() : undefined!;
  let dir: string | undefined;
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    child = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('maps memfd guest RAM at the server, moves edu DMA through it, signals MSI, and fails cleanly when the server is killed', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-vuc-'));
    const path = join(dir, 'edu.sock');
    const fdsBefore = fds(); // before the server's pipes exist: they are gone once it has exited
    child = await startServer(path);
    const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: 0x10_0000n, name: 'ram' }], { backing: 'memfd' });
    const as = new AddressSpace('system');
    await as.addSection({ kind: 'ram', start: 0n, size: 0x10_0000n, block: memory.blocks[0]!, offset: 0n, readonly: false });
    const space = new VfioAddressSpace(as, memory);
    const proxy = new VfioUserProxy({ device: 'edu0', transport: SocketTransport.connect(path), host, timeoutMs: 5000 });
    const device = new VfioUserDevice('edu0', proxy, host);
    const backend = new VfioUserIommuBackend(host, new VmmEventBus());
    const msi = host.eventfd(0, EFD_NONBLOCK);
    try {
      await backend.attachDevice('edu0', device, space);
      const io = device.io;
      const id = await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_ID), 4);
      expect(new DataView(id.buffer).getUint32(0, true)).toBe(0x010000ed);
      await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x06, 0]));
      await io.setIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1, eventfds: [msi] });
      memory.write(0x1000n, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
      const run = async (src: bigint, dst: bigint, cmd: number): Promise<void> => {
        await runEduDma(io, src, dst, cmd);
      };
      await run(0x1000n, BigInt(EDU_DMA_START), EDU_DMA_RUN);
      await run(BigInt(EDU_DMA_START), 0x8000n, EDU_DMA_RUN | EDU_DMA_TO_PCI | EDU_DMA_IRQ);
      // The other process wrote this process's memfd pages.
      expect([...memory.read(0x8000n, 4)]).toEqual([0xde, 0xad, 0xbe, 0xef]);
      const count = new Uint8Array(8);
      host.read(msi, count);
      expect(new DataView(count.buffer).getBigUint64(0, true)).toBe(1n);

      const exited = new Promise((r) => child!.once('close', r)); // exited, and its pipes closed
      child!.kill('SIGKILL');
      await exited;
      const error = await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_ID), 4).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(VfioError);
      expect(error).toMatchObject({ device: 'edu0', errno: 'ENOTCONN' });
      expect(device.failed).toBe(true);
      memory.write(0x8000n, new Uint8Array([1])); // the VM's memory is still ours to use
      await backend.detachDevice(device);
    } finally {
      proxy.close();
      host.close(msi);
      for (const s of [...as.sections]) await as.removeSection(s);
      memory.free();
    }
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(fdsBefore);
  }, 30_000);
});
