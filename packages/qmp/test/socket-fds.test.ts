// Descriptors over the real QMP socket (SCM_RIGHTS, as libvirt and qemu.qmp pass them): getfd /
// closefd, add-fd / query-fdsets / remove-fd, device_add fd=NAME; every descriptor that arrives is
// taken by a command or closed, counted in /proc/self/fd. The client is core's byte stream with fds.

import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LinuxHost, UnixStream, Vmm, type HostKernel } from '@vmmkit/core';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin } from '@vmmkit/device-vfio-pci';
import { SimHost, simMachine } from '@vmmkit/sim';
import { QmpServer } from '../src/index.js';

type Message = Record<string, any>;

/** A QMP client on the socket: lines in, commands out with descriptors. */
class SocketClient {
  readonly received: Message[] = [];
  closed = false;
  readonly #stream: UnixStream;
  #text = '';
  #waiters: (() => void)[] = [];

  constructor(path: string) {
    this.#stream = UnixStream.connect(path);
    this.#stream.start({
      data: (bytes, fds) => {
        for (const fd of fds) closeSync(fd);
        this.#text += Buffer.from(bytes).toString();
        const lines = this.#text.split('\r\n');
        this.#text = lines.pop()!;
        this.received.push(...lines.map((l) => JSON.parse(l) as Message));
        this.#wake();
      },
      closed: () => {
        this.closed = true;
        this.#wake();
      },
    });
  }

  send(text: string, fds: number[] = []): void {
    this.#stream.send(Buffer.from(text), fds);
  }

  /** Wait for the `n`th message (1-based) and return it. */
  async nth(n: number): Promise<Message> {
    while (this.received.length < n) {
      if (this.closed) throw new Error(`the server hung up after ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return this.received[n - 1]!;
  }

  /** Run a command (with descriptors) and return its answer. */
  async execute(command: string, args?: Message, fds: number[] = []): Promise<Message> {
    const n = this.received.length;
    this.send(JSON.stringify({ execute: command, ...(args && { arguments: args }) }), fds);
    return await this.nth(n + 1);
  }

  async negotiate(): Promise<void> {
    await this.nth(1);
    expect(await this.execute('qmp_capabilities')).toEqual({ return: {} });
  }

  close(): void {
    this.#stream.close();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

/** A second real fd for the file `fd` is open on. */
const dupOf = (fd: number): number => openSync(readlinkSync(`/proc/self/fd/${fd}`), 'r');

/** The fds this process has open now. */
const openFds = (): number => readdirSync('/proc/self/fd').length;

/** The two ends of one client's connection, both in this process. */
const CONNECTION_FDS = 2;

/** Let the server's poll callbacks run. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

let dir: string;
let path: string;
let vmm: Vmm;
let server: QmpServer;
let client: SocketClient;
let devNull: number;

async function start(host: HostKernel): Promise<void> {
  vmm = await Vmm.create({ host, plugins: [iommufdPlugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 1n << 20n }], name: 'fds' });
  server = new QmpServer(vmm);
  await server.listen(path);
  client = new SocketClient(path);
  await client.negotiate();
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmmkit-qmp-fds-'));
  path = join(dir, 'qmp.sock');
  devNull = openSync('/dev/null', 'r');
});
afterEach(async () => {
  client?.close();
  await server?.close();
  await vmm?.close();
  closeSync(devNull);
  rmSync(dir, { recursive: true, force: true });
});

describe('on this process\'s kernel (LinuxHost)', () => {
  beforeEach(() => start(new LinuxHost()));

  it('getfd names a passed descriptor, closefd closes it', async () => {
    const before = openFds();
    expect(await client.execute('getfd', { fdname: 'null' }, [devNull])).toEqual({ return: {} });
    // The server holds its own duplicate until closefd.
    expect(openFds()).toBe(before + 1);
    expect(await client.execute('closefd', { fdname: 'null' })).toEqual({ return: {} });
    expect(openFds()).toBe(before);
    expect(await client.execute('closefd', { fdname: 'null' })).toMatchObject({ error: { class: 'GenericError', desc: "File descriptor named 'null' not found" } });
  });

  it('takes a descriptor sent with a byte ahead of the command (qemu.qmp\'s send_fd_scm)', async () => {
    const before = openFds();
    client.send(' ', [devNull]);
    await settle();
    expect(await client.execute('getfd', { fdname: 'early' })).toEqual({ return: {} });
    expect(openFds()).toBe(before + 1);
    // The client going away closes what it named (and both ends of the connection go).
    client.close();
    await settle();
    expect(server.sessions).toEqual([]);
    expect(openFds()).toBe(before - CONNECTION_FDS);
  });

  it('gives descriptors to the message they came with, not to the one before it', async () => {
    const before = openFds();
    // Two commands in one send: the fds arrive with the last byte, which ends getfd's text.
    client.send('{"execute":"query-status"}{"execute":"getfd","arguments":{"fdname":"late"}}', [devNull]);
    expect(await client.nth(4)).toEqual({ return: {} });
    expect(openFds()).toBe(before + 1);
  });

  it('add-fd keeps the descriptor in a set, query-fdsets lists it, remove-fd closes it', async () => {
    const before = openFds();
    const added = await client.execute('add-fd', { opaque: 'null' }, [devNull]);
    expect(added.return).toMatchObject({ 'fdset-id': 0 });
    const fd = added.return.fd as number;
    expect(fd).not.toBe(devNull);
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe('/dev/null');
    expect(await client.execute('query-fdsets')).toEqual({ return: [{ 'fdset-id': 0, fds: [{ fd, opaque: 'null' }] }] });
    expect(await client.execute('remove-fd', { 'fdset-id': 0, fd })).toEqual({ return: {} });
    expect(openFds()).toBe(before);
    expect(await client.execute('query-fdsets')).toEqual({ return: [] });
  });

  it('closes a descriptor that came with a command that does not take it, and extra ones', async () => {
    const before = openFds();
    expect(await client.execute('query-status', undefined, [devNull, devNull])).toMatchObject({ return: { status: 'running' } });
    expect(openFds()).toBe(before);
    expect(await client.execute('getfd', { fdname: 'one' }, [devNull, devNull])).toEqual({ return: {} });
    expect(openFds()).toBe(before + 1);
    expect(await client.execute('closefd', { fdname: 'one' })).toEqual({ return: {} });
    expect(openFds()).toBe(before);
  });

  it('device_add vfio-pci fd=NAME reaches the device with the passed descriptor', async () => {
    expect(await client.execute('getfd', { fdname: 'dev' }, [devNull])).toEqual({ return: {} });
    const answer = await client.execute('device_add', { driver: 'vfio-pci', id: 'nic0', fd: 'dev' });
    // vfio-pci refuses a cdev without iommufd=; what matters is the fd it names: the server's copy,
    // under the client's names for the device and the descriptor.
    expect(answer.error).toMatchObject({ class: 'GenericError', desc: expect.stringMatching(/^vfio-pci 'nic0': .*fd=dev \(the VMM's fd \d+\) passes a device cdev/) });
    const fd = Number(/the VMM's fd (\d+)/.exec(answer.error.desc as string)![1]);
    expect(fd).not.toBe(devNull);
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe('/dev/null');
    // A refused device leaves the name with the client.
    expect(await client.execute('closefd', { fdname: 'dev' })).toEqual({ return: {} });
  });

  it('closes the descriptors of a client dropped for garbage', async () => {
    const before = openFds();
    client.send('garbage', [devNull]);
    await settle();
    expect(client.closed).toBe(true);
    expect(openFds()).toBe(before - CONNECTION_FDS);
  });
});

const NO_IOMMUFD = existsSync('/dev/iommu') ? undefined : 'this machine has no /dev/iommu (iommufd module not loaded)';
if (NO_IOMMUFD) console.log(`skipping the real /dev/iommu over the socket: ${NO_IOMMUFD}`);

describe.skipIf(NO_IOMMUFD !== undefined)('a real /dev/iommu over the socket (LinuxHost)', () => {
  beforeEach(() => start(new LinuxHost()));

  it('object-add iommufd fd=NAME keeps the passed /dev/iommu for the object, object-del closes it', async () => {
    const iommu = openSync('/dev/iommu', 'r+');
    try {
      const before = openFds();
      expect(await client.execute('getfd', { fdname: 'io' }, [iommu])).toEqual({ return: {} });
      expect(await client.execute('object-add', { 'qom-type': 'iommufd', id: 'iommufd0', fd: 'io' })).toEqual({ return: {} });
      // The name was taken by the object.
      expect(await client.execute('closefd', { fdname: 'io' })).toMatchObject({ error: { desc: "File descriptor named 'io' not found" } });
      expect(openFds()).toBe(before + 1);
      expect(await client.execute('object-del', { id: 'iommufd0' })).toEqual({ return: {} });
      expect(openFds()).toBe(before);
    } finally {
      closeSync(iommu);
    }
  });
});

describe('on a simulated host (vmmkit run --sim)', () => {
  let host: SimHost;
  beforeEach(() => start((host = new SimHost(simMachine()))));

  it('adopts passed descriptors into the simulated kernel and closes the real one with the simulated one', async () => {
    const before = openFds();
    expect(await client.execute('getfd', { fdname: 'x' }, [devNull])).toEqual({ return: {} });
    expect(openFds()).toBe(before + 1);
    expect(host.census().objects).toMatchObject({ process_fd: 1 });
    expect(await client.execute('closefd', { fdname: 'x' })).toEqual({ return: {} });
    expect(openFds()).toBe(before);
    expect(host.census().objects).not.toHaveProperty('process_fd');
  });

  it('device_add vfio-pci fd=NAME checks the passed descriptor as the simulated kernel names it', async () => {
    expect(await client.execute('object-add', { 'qom-type': 'iommufd', id: 'iommufd0' })).toEqual({ return: {} });
    expect(await client.execute('getfd', { fdname: 'dev' }, [devNull])).toEqual({ return: {} });
    const answer = await client.execute('device_add', { driver: 'vfio-pci', id: 'nic0', fd: 'dev', iommufd: 'iommufd0' });
    expect(answer.error).toEqual({ class: 'GenericError', desc: expect.stringMatching(/^vfio-pci 'nic0': fd=dev \(the VMM's fd \d+\) is \/dev\/null, not a VFIO device cdev/) });
    expect(answer.error.desc).not.toMatch(/VFIO_FD/);
    const before = openFds();
    client.close();
    await settle();
    expect(openFds()).toBe(before - CONNECTION_FDS - 1);
    expect(host.census().objects).not.toHaveProperty('process_fd');
  });

  it('object-add iommufd fd=NAME: a passed descriptor that is not /dev/iommu is refused by name, and stays the client\'s', async () => {
    const before = openFds();
    expect(await client.execute('getfd', { fdname: 'io' }, [devNull])).toEqual({ return: {} });
    const answer = await client.execute('object-add', { 'qom-type': 'iommufd', id: 'iommufd1', fd: 'io' });
    expect(answer.error).toEqual({ class: 'GenericError', desc: expect.stringMatching(/^iommufd object 'iommufd1': fd=io \(the VMM's fd \d+\) is \/dev\/null, not \/dev\/iommu$/) });
    expect(vmm.objects.size).toBe(0);
    expect(host.census().objects).toMatchObject({ process_fd: 1 });
    expect(await client.execute('closefd', { fdname: 'io' })).toEqual({ return: {} });
    expect(openFds()).toBe(before);
    expect(host.census().objects).not.toHaveProperty('process_fd');
  });

  it('a descriptor the simulated kernel cannot take over is reported by the command that wanted it: which fd and why', async () => {
    const before = openFds();
    // Fill the simulated fd table: the next adoption is refused with EMFILE.
    const filler: number[] = [];
    for (;;) {
      try {
        filler.push(host.eventfd(0, 0));
      } catch {
        break;
      }
    }
    const getfd = await client.execute('getfd', { fdname: 'x' }, [devNull]);
    expect(getfd.error).toEqual({
      class: 'GenericError',
      desc: expect.stringMatching(/^getfd 'x': The file descriptor supplied via SCM_RIGHTS \(fd \d+ of the VMM process\) could not be taken over: .*EMFILE/),
    });
    const addFd = await client.execute('add-fd', {}, [devNull]);
    expect(addFd.error.desc).toMatch(/^add-fd: The file descriptor supplied via SCM_RIGHTS \(fd \d+ of the VMM process\) could not be taken over: .*EMFILE/);
    // A command that takes none is not disturbed by one that was refused.
    expect(await client.execute('query-status', undefined, [devNull])).toMatchObject({ return: { status: 'running' } });
    for (const fd of filler) host.close(fd);
    expect(openFds()).toBe(before);
    expect(await client.execute('getfd', { fdname: 'x' }, [devNull])).toEqual({ return: {} });
  });

  it('an fd the simulated kernel cannot adopt (not open, or its table full) is closed all the same', async () => {
    const before = openFds();
    expect(() => host.adoptProcessFd(1 << 20)).toThrow(expect.objectContaining({ errno: 'EBADF', syscall: 'readlink' }));
    // A full simulated fd table refuses it (EMFILE): the real fd is closed all the same.
    const full = new SimHost({ fdLimit: 3 });
    expect(() => full.adoptProcessFd(dupOf(devNull))).toThrow(expect.objectContaining({ errno: 'EMFILE' }));
    expect(openFds()).toBe(before);
    expect(full.census().objects).toEqual({});
  });
});
