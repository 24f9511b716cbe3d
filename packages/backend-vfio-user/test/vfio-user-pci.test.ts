// -device vfio-user-pci on this machine's kernel, against @vmmkit/vfio-user-server in other
// processes over real Unix sockets: vfio-pci's model (config space, BARs, MSI, DMA, reset) over
// messages, the nic's BAR2 mapped from the server's memfd and its doorbell's ioeventfd, edu's DMA into memfd guest RAM and by
// DMA_WRITE messages into RAM without a file, and a server killed or stalled under the VM: a
// typed error naming the device, the device failed, the VM and its other device going on, and
// unrealize leaving this process's fds and mappings as they were. Needs the built packages.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, LinuxHost, VfioError, Vmm, type VmmEvents } from '@vmmkit/core';
import { PCI_COMMAND } from '@vmmkit/core/uapi';
import {
  EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_DMA_TO_PCI, EDU_ID,
  EDU_IRQ_RAISE, EDU_LIVENESS, NIC_BAR2_SIZE, NIC_DOORBELL, NIC_ID, NIC_ID_VALUE, SimHost, simMachine,
} from '@vmmkit/sim';
import type { VfioPciDevice, VfioPciInterrupt } from '@vmmkit/device-vfio-pci';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';

const onLinux = process.platform === 'linux';
const fixture = join(import.meta.dirname, 'fixtures/serve-model.mjs');
const fds = (): number => readdirSync('/proc/self/fd').length;
const mappings = (name: string): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`/memfd:${name}`)).length;
const PCI_CAP_ID_MSI = 0x05;

interface Server {
  readonly path: string;
  readonly child: ChildProcess;
  /** Resolves once the server has seen `n` clients leave (it serves one client at a time). */
  left(n: number): Promise<void>;
}

async function startServer(model: 'edu' | 'nic', path: string): Promise<Server> {
  const child = spawn(process.execPath, [fixture, model, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const waiters: (() => void)[] = [];
  child.stderr!.on('data', (d) => {
    stderr += String(d);
    for (const w of waiters.splice(0)) w();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  const left = async (n: number): Promise<void> => {
    while ((stderr.match(/client left/g)?.length ?? 0) < n) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { path, child, left };
}

const exited = (child: ChildProcess): Promise<unknown> => new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('close', r)));

async function vmOn(host: LinuxHost, memoryBacking: 'memfd' | 'anonymous'): Promise<Vmm> {
  return Vmm.create({ host, plugins: [vfioUserPlugin()], memory: [{ gpa: 0n, size: 0x10_0000n, name: 'ram' }], memoryBacking });
}

/** The config-space offset of capability `id` (0 when absent), walked as a guest does. */
async function findCap(d: VfioPciDevice, id: number): Promise<number> {
  let cap = await d.configRead(0x34, 1);
  while (cap && (await d.configRead(cap, 1)) !== id) cap = await d.configRead(cap + 1, 1);
  return cap;
}

/** One edu DMA of 4 bytes (edu's timer is a read of its command register). */
async function eduDma(d: VfioPciDevice, src: bigint, dst: bigint, cmd: number): Promise<void> {
  await d.barWrite(0, EDU_DMA_SRC, 8, src);
  await d.barWrite(0, EDU_DMA_DST, 8, dst);
  await d.barWrite(0, EDU_DMA_COUNT, 8, 4n);
  await d.barWrite(0, EDU_DMA_CMD, 8, BigInt(cmd));
  for (let i = 0; i < 100 && (await d.barRead(0, EDU_DMA_CMD, 4)) & BigInt(EDU_DMA_RUN); i++) await new Promise((r) => setTimeout(r, 5));
}

const nextInterrupt = (d: VfioPciDevice): Promise<VfioPciInterrupt> => new Promise((resolve) => d.once('interrupt', resolve));

describe('-device vfio-user-pci options', () => {
  it('refuses a socket that is missing, of another type or given twice, and a VMM not on this machine\'s kernel', async () => {
    const vmm = await Vmm.create({ host: new SimHost(simMachine()), plugins: [vfioUserPlugin()] });
    const refused = (desc: string, pattern: RegExp) => expect(vmm.addDevice(desc)).rejects.toSatisfy((e: unknown) => e instanceof ConfigError && pattern.test(e.message));
    await refused('vfio-user-pci', /no socket given/);
    await refused('{"driver":"vfio-user-pci","socket":{"type":"inet","path":"/x"}}', /unsupported socket type 'inet'/);
    await refused('vfio-user-pci,socket=/a,socket.path=/b,socket.type=unix', /not both/);
    await refused('vfio-user-pci,socket=/tmp/none.sock', /must run on LinuxHost/);
    await refused('{"driver":"vfio-user-pci",', /not valid JSON/);
    expect(vmm.devices).toEqual([]);
    await vmm.close();
  });
});

describe.skipIf(!onLinux)('vfio-user-pci against vfio-user-server processes over Unix sockets (LinuxHost)', () => {
  const host = onLinux ? new LinuxHost() : undefined!;
  let dir: string | undefined;
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const serve = async (model: 'edu' | 'nic'): Promise<Server> => {
    dir ??= mkdtempSync(join(tmpdir(), 'vmmkit-vupci-'));
    const server = await startServer(model, join(dir, `${model}-${children.length}.sock`));
    children.push(server.child);
    return server;
  };

  it('realizes edu and nic (short and JSON forms): config space, BARs, BAR2 mapped from the server\'s memfd, MSI, DMA into memfd RAM, reset', async () => {
    const fdsBefore = fds();
    const edu = await serve('edu');
    const nic = await serve('nic');
    const vmm = await vmOn(host, 'memfd');
    const warnings: VmmEvents['vfio:warning'][0][] = [];
    vmm.events.on('vfio:warning', (w) => warnings.push(w));
    const e = (await vmm.addDevice(`vfio-user-pci,socket=${edu.path},id=edu0`)) as VfioPciDevice;
    const n = (await vmm.addDevice(JSON.stringify({ driver: 'vfio-user-pci', socket: { path: nic.path, type: 'unix' }, id: 'nic0' }))) as VfioPciDevice;
    expect([e.driver, e.name, e.id]).toEqual(['vfio-user-pci', `vfio-user:${edu.path}`, 'edu0']);
    expect(warnings).toEqual([]); // guest RAM has a file: nothing goes by message

    // Config space through REGION_READ: edu's ids, the nic's; BAR sizes from region info.
    expect([await e.configRead(0, 2), await e.configRead(2, 2)]).toEqual([0x1234, 0x11e8]);
    expect(await n.configRead(0, 2)).not.toBe(0xffff);
    expect(e.bar(0).size).toBe(0x10_0000n);
    expect(Number(await e.barRead(0, EDU_ID, 4))).toBe(0x010000ed);
    await e.barWrite(0, EDU_LIVENESS, 4, 0x12345678n);
    expect(Number(await e.barRead(0, EDU_LIVENESS, 4))).toBe(0xedcba987);
    expect(Number(await n.barRead(0, NIC_ID, 4))).toBe(NIC_ID_VALUE);

    // The nic's BAR2: two sparse areas mapped from the server's memfd; the register page between them by message.
    expect(n.bar(2).size).toBe(BigInt(NIC_BAR2_SIZE));
    expect(n.bar(2).mmapped.length).toBe(2);
    expect(mappings('vmmkit-nic-bar2')).toBe(2);
    await n.barWrite(2, 0x10, 4, 0xfeedn);
    expect(await n.barRead(2, 0x10, 4)).toBe(0xfeedn);
    await n.barWrite(2, NIC_DOORBELL, 4, 1n);
    await n.barWrite(2, NIC_DOORBELL, 4, 1n);
    expect(await n.barRead(2, NIC_DOORBELL, 4)).toBe(2n);
    // The doorbell's ioeventfd, fetched at realize with GET_REGION_IO_FDS: a signal on it (what
    // KVM does on the guest's write) rings the doorbell in the server process; unrealize closes it.
    const [doorbell] = n.barEventfds(2);
    expect(doorbell).toMatchObject({ offset: BigInt(NIC_DOORBELL), size: 4 });
    expect(e.barEventfds(0)).toEqual([]);
    host.write(doorbell!.fd, new Uint8Array(new BigUint64Array([1n]).buffer));
    for (let i = 0; i < 100 && (await n.barRead(2, NIC_DOORBELL, 4)) !== 3n; i++) await new Promise((r) => setTimeout(r, 5));
    expect(await n.barRead(2, NIC_DOORBELL, 4)).toBe(3n);

    // DMA both ways through the memfd the server mapped, and an MSI on its eventfd.
    await e.configWrite(PCI_COMMAND, 2, (await e.configRead(PCI_COMMAND, 2)) | 0x6);
    const msi = await findCap(e, PCI_CAP_ID_MSI);
    expect(msi).not.toBe(0);
    const flags = await e.configRead(msi + 2, 2);
    await e.configWrite(msi + 4, 4, 0xfee0_0000);
    const dataAt = flags & 0x80 ? 0x0c : 0x08;
    if (flags & 0x80) await e.configWrite(msi + 8, 4, 0);
    await e.configWrite(msi + dataAt, 2, 0x4041);
    await e.configWrite(msi + 2, 2, flags | 1);
    expect(e.interruptMode).toBe('msi');
    vmm.memory.write(0x1000n, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    await eduDma(e, 0x1000n, BigInt(EDU_DMA_START), EDU_DMA_RUN);
    const interrupt = nextInterrupt(e);
    await eduDma(e, BigInt(EDU_DMA_START), 0x8000n, EDU_DMA_RUN | EDU_DMA_TO_PCI | EDU_DMA_IRQ);
    expect([...vmm.memory.read(0x8000n, 4)]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(await interrupt).toMatchObject({ mode: 'msi', vector: 0, message: { address: 0xfee0_0000n, data: 0x4041 } });
    const raised = nextInterrupt(e);
    await e.barWrite(0, EDU_IRQ_RAISE, 4, 1n);
    expect((await raised).mode).toBe('msi');

    // A reset through DEVICE_RESET: MSI off (back to INTx: edu has a pin), decoding off, edu's registers at their power-on values.
    await e.reset();
    expect(e.interruptMode).toBe('intx');
    expect((await e.configRead(PCI_COMMAND, 2)) & 0x6).toBe(0);
    await e.configWrite(PCI_COMMAND, 2, 0x2);
    expect(await e.barRead(0, EDU_LIVENESS, 4)).not.toBe(0xedcba987n);

    await vmm.removeDevice('nic0');
    expect(mappings('vmmkit-nic-bar2')).toBe(0);
    expect(e.failure).toBeUndefined();
    await vmm.close();
    expect(mappings('guest-ram')).toBe(0);
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map(exited));
    expect(fds()).toBe(fdsBefore);
  }, 30_000);

  it('moves edu\'s DMA into RAM without a file by DMA_WRITE messages, and warns that RAM is reached by message only', async () => {
    const fdsBefore = fds();
    const edu = await serve('edu');
    // A first VM with memfd RAM loads edu's DMA buffer; the server keeps the device's state when it leaves.
    const first = await vmOn(host, 'memfd');
    const a = (await first.addDevice(`vfio-user-pci,socket=${edu.path}`)) as VfioPciDevice;
    await a.configWrite(PCI_COMMAND, 2, 0x6);
    first.memory.write(0x2000n, new Uint8Array([0x11, 0x22, 0x33, 0x44]));
    await eduDma(a, 0x2000n, BigInt(EDU_DMA_START), EDU_DMA_RUN);
    await first.close();
    // The server serves one client at a time: it must have seen the first leave before the next connects.
    await edu.left(1);

    const vmm = await vmOn(host, 'anonymous');
    const warnings: string[] = [];
    vmm.events.on('vfio:warning', (w) => warnings.push(w.message));
    const d = (await vmm.addDevice(`vfio-user-pci,socket=${edu.path},id=edu0`)) as VfioPciDevice;
    expect(warnings.some((w) => w.includes('ram') && w.includes('DMA_READ/DMA_WRITE messages'))).toBe(true);
    await d.configWrite(PCI_COMMAND, 2, 0x6);
    vmm.memory.write(0x9000n, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    await eduDma(d, BigInt(EDU_DMA_START), 0x9000n, EDU_DMA_RUN | EDU_DMA_TO_PCI);
    // The DMA_WRITE is posted by the server: it arrives on its own message.
    for (let i = 0; i < 100 && vmm.memory.read(0x9000n, 1)[0] === 0xff; i++) await new Promise((r) => setTimeout(r, 5));
    expect([...vmm.memory.read(0x9000n, 4)]).toEqual([0x11, 0x22, 0x33, 0x44]);
    await vmm.close();
    edu.child.kill('SIGTERM');
    await exited(edu.child);
    expect(fds()).toBe(fdsBefore);
  }, 30_000);

  it.each(['killed', 'stalled'] as const)('a server %s under the VM: typed error naming the device, device failed, the VM and the other device go on, unrealize leaves nothing', async (how: 'killed' | 'stalled') => {
    const fdsBefore = fds();
    const edu = await serve('edu');
    const nic = await serve('nic');
    const vmm = await vmOn(host, 'memfd');
    const e = (await vmm.addDevice(`vfio-user-pci,socket=${edu.path},id=edu0,x-msg-timeout=300`)) as VfioPciDevice;
    const n = (await vmm.addDevice(`vfio-user-pci,socket=${nic.path},id=nic0`)) as VfioPciDevice;
    await e.configWrite(PCI_COMMAND, 2, 0x6);
    await e.barWrite(0, EDU_LIVENESS, 4, 1n);

    if (how === 'killed') {
      edu.child.kill('SIGKILL');
      await exited(edu.child);
    } else edu.child.kill('SIGSTOP');
    const error = await e.barRead(0, EDU_ID, 4).then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(VfioError);
    expect(error).toMatchObject({ device: `vfio-user:${edu.path}` });
    // Killed: the connection ends (a peer close, a reset when a message was in flight, or a send finding it gone); stalled: no reply in time.
    expect(how === 'killed' ? ['ENOTCONN', 'ECONNRESET', 'EPIPE'] : ['ETIMEDOUT']).toContain((error as VfioError).errno);
    expect(e.failure).toBe(error);
    // Later accesses fail at once with the same error; the nic and the VM go on.
    await expect(e.configRead(0, 2)).rejects.toBe(error);
    expect(vmm.running).toBe(true);
    expect(Number(await n.barRead(0, NIC_ID, 4))).toBe(NIC_ID_VALUE);
    vmm.memory.write(0x3000n, new Uint8Array([1, 2]));

    await vmm.removeDevice('edu0');
    expect(vmm.devices.map((d) => d.id)).toEqual(['nic0']);
    expect(Number(await n.barRead(0, NIC_ID, 4))).toBe(NIC_ID_VALUE);
    await vmm.close();
    edu.child.kill('SIGKILL');
    nic.child.kill('SIGTERM');
    await Promise.all([exited(edu.child), exited(nic.child)]);
    expect(mappings('guest-ram')).toBe(0);
    expect(fds()).toBe(fdsBefore);
  }, 30_000);
});
