// Device servers in processes of their own for migration tests: a nic served over a Unix socket
// by test/fixtures/serve-nic.mjs, and the client's side of it on this machine's kernel (memfd
// guest RAM, the device attached through VfioUserIommuBackend and probed for migration).

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  AddressSpace, GuestMemory, VfioAddressSpace, VmmEventBus, probeMigrationSupport, type HostKernel, type VfioContainerBase,
} from '@vmmkit/core';
import { SocketTransport } from '@vmmkit/core/vfio-user';
import { VfioUserDevice, VfioUserIommuBackend, VfioUserProxy } from '@vmmkit/backend-vfio-user';
import { RAM_SIZE } from './vfio-user-rig.js';

const FIXTURE = join(import.meta.dirname, 'fixtures/serve-nic.mjs');
/** The built `vmmkit` command (npm test builds it first). */
const VMMKIT = join(import.meta.dirname, '../../../examples/dist/cli/main.js');

/** A nic server process: its device state on request, and how it ends. */
export interface NicServerProcess {
  readonly child: ChildProcess;
  /** The model's device state (migration.save()) as the server process holds it now. */
  state(): Promise<Buffer>;
  /** The device state when the model last started running (a destination's: the state it loaded). */
  startedState(): Promise<Buffer>;
  /** Kill it and wait until it is gone (its pipes closed). */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Start a nic server at `path`; resolves once it listens. */
export async function startNicServer(path: string, options: { migration?: boolean } = {}): Promise<NicServerProcess> {
  const child = spawn(process.execPath, [FIXTURE, path, options.migration === false ? 'no-migration' : 'migration'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = (): Promise<string> => new Promise((resolve, reject) => {
    waiting.push(resolve);
    child.once('exit', (code) => reject(new Error(`nic server exited with ${code}: ${stderr}`)));
  });
  const ready = await next();
  if (ready !== 'ready') throw new Error(`nic server said ${ready}`);
  const ask = async (what: string): Promise<Buffer> => {
    const answer = next();
    child.stdin!.write(`${what}\n`);
    return Buffer.from((await answer).slice(what.length + 1), 'hex');
  };
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    child,
    state: () => ask('state'),
    startedState: () => ask('started'),
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await gone;
    },
  };
}

/** A `vmmkit serve --device nic` process: how it ends (it has no way to report its model's state). */
export interface CliNicServer {
  readonly child: ChildProcess;
  /** Kill it and wait until it is gone (its pipes closed). */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Start `vmmkit serve --device nic --socket path`; resolves once it says it serves (within `timeoutMs`). */
export async function startCliNicServer(path: string, timeoutMs = 60_000): Promise<CliNicServer> {
  const child = spawn(process.execPath, [VMMKIT, 'serve', '--device', 'nic', '--socket', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await gone;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => line.startsWith('serving nic ') && resolve());
      void gone.then(() => reject(new Error(`vmmkit serve exited (${child.exitCode ?? child.signalCode}) before it served: ${stderr}`)));
      timer = setTimeout(() => reject(new Error(`vmmkit serve did not serve within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    });
  } catch (e) {
    await kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { child, kill };
}

/** The client's side of a nic served by another process. */
export interface RemoteNic {
  readonly memory: GuestMemory;
  readonly device: VfioUserDevice;
  readonly container: VfioContainerBase;
  readonly events: VmmEventBus;
  /** Detach, close the connection, free guest RAM. */
  close(): Promise<void>;
}

/** Guest RAM (1 MiB memfd) and a nic attached over the socket at `path`, probed for migration. */
export async function connectNic(host: HostKernel, path: string, name: string): Promise<RemoteNic> {
  const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: RAM_SIZE, name: 'ram' }], { backing: 'memfd' });
  const as = new AddressSpace('system');
  await as.addSection({ kind: 'ram', start: 0n, size: RAM_SIZE, block: memory.blocks[0]!, offset: 0n, readonly: false });
  const space = new VfioAddressSpace(as, memory);
  const proxy = new VfioUserProxy({ device: name, transport: SocketTransport.connect(path), host, timeoutMs: 5000 });
  const device = new VfioUserDevice(name, proxy, host);
  const events = new VmmEventBus();
  const backend = new VfioUserIommuBackend(host, events);
  const close = async (): Promise<void> => {
    await backend.detachDevice(device).catch(() => undefined);
    proxy.close();
    for (const s of [...as.sections]) await as.removeSection(s);
    memory.free();
  };
  try {
    const container = await backend.attachDevice(name, device, space);
    await probeMigrationSupport(device);
    return { memory, device, container, events, close };
  } catch (e) {
    await close();
    throw e;
  }
}
