// The QMP server of one VMM (QEMU's monitor/qmp.c with the commands of qapi/*.json): it owns its
// clients' sessions, the sockets it listens on, the descriptors clients passed, and what it
// tracks of the VM for QMP (run state, the migration it started, PCI slots); the VM stays the
// VMM's.

import { ConfigError, LinuxHost, type HostKernel, type Vmm } from '@vmmkit/core';
import { CONTROL_COMMANDS, QMP_SCHEMA_VERSION } from './commands/control-commands.js';
import { DEVICE_COMMANDS } from './commands/device-commands.js';
import { FD_COMMANDS } from './commands/fd-commands.js';
import { MIGRATION_COMMANDS } from './commands/migration-commands.js';
import { MIGRATION_PARAMETER_COMMANDS } from './commands/migration-parameter-commands.js';
import { OBJECT_COMMANDS } from './commands/object-commands.js';
import { RUN_STATE_COMMANDS } from './commands/run-state-commands.js';
import type { JsonSplitterLimits } from './protocol/json-splitter.js';
import type { QmpArgs } from './protocol/qmp-args.js';
import type { QmpClientFds, QmpCommand } from './protocol/qmp-command.js';
import { QmpSession, type QmpPeer } from './protocol/qmp-session.js';
import { forwardVmmEvents } from './qmp-events.js';
import { listenUnix, type QmpListener, type QmpSocketOptions } from './qmp-socket.js';
import { FdSets } from './state/fd-sets.js';
import { MigrationState } from './state/migration-state.js';
import { PciSlots } from './state/pci-slots.js';
import { QomPaths } from './state/qom-paths.js';
import { RunStateTracker } from './state/run-state.js';

/** How a QMP server is set up. */
export interface QmpServerOptions {
  /**
   * The VM was created waiting for an incoming migration (status `inmigrate`): `defer` when
   * migrate-incoming is to start it (QEMU's `-incoming defer`), `started` when the embedding VMM
   * receives it itself (`-incoming URI`: migrate-incoming is then refused as already started).
   * Default: none, and migrate-incoming is refused.
   */
  readonly incoming?: 'defer' | 'started';
  /** What `quit` does once answered (the composition root closes the VM and exits). */
  readonly onQuit?: () => void;
  /** An incoming migration failed and its client asked for exit-on-error (QEMU exits). */
  readonly onIncomingFailed?: (error: unknown) => void;
  /** More commands (a plugin's); a name already taken is refused. */
  readonly commands?: readonly QmpCommand[];
  /** Bounds on what one client may send. */
  readonly limits?: JsonSplitterLimits;
}

/** Every command vmmkit's QMP server knows. */
export const BUILTIN_COMMANDS: readonly QmpCommand[] = [
  ...CONTROL_COMMANDS, ...RUN_STATE_COMMANDS, ...DEVICE_COMMANDS, ...OBJECT_COMMANDS, ...FD_COMMANDS,
  ...MIGRATION_COMMANDS, ...MIGRATION_PARAMETER_COMMANDS,
];

export class QmpServer {
  readonly runState: RunStateTracker;
  readonly migration: MigrationState;
  readonly pciSlots: PciSlots;
  readonly qomPaths: QomPaths;
  readonly fdSets: FdSets;
  readonly #commands = new Map<string, QmpCommand>();
  readonly #sessions = new Set<QmpSession>();
  readonly #listeners: QmpListener[] = [];
  /** Descriptors passed to object-add that the object uses without owning. */
  readonly #objectFds = new Map<string, number>();
  readonly #unforward: () => void;
  #closed = false;

  /** @throws ConfigError when two commands have one name. */
  constructor(readonly vmm: Vmm, private readonly options: QmpServerOptions = {}) {
    for (const command of [...BUILTIN_COMMANDS, ...(options.commands ?? [])]) {
      if (this.#commands.has(command.name) || command.name === 'qmp_capabilities') throw new ConfigError(`QMP command '${command.name}' is given twice`, 'commands', command.name);
      this.#commands.set(command.name, command);
    }
    const emit = this.emit.bind(this);
    this.runState = new RunStateTracker(vmm, options.incoming !== undefined);
    this.migration = new MigrationState(vmm, emit);
    this.qomPaths = new QomPaths(vmm, (gone) => emit('DEVICE_DELETED', { ...gone }));
    this.pciSlots = new PciSlots(vmm, this.qomPaths);
    this.fdSets = new FdSets((fd) => this.closeFd(fd));
    this.#unforward = forwardVmmEvents(vmm, emit, this.qomPaths);
  }

  /** How the VM was created to wait for an incoming migration, if it was. */
  get incoming(): 'defer' | 'started' | undefined {
    return this.options.incoming;
  }

  /** The names query-commands lists. */
  commandNames(): string[] {
    return ['qmp_capabilities', ...this.#commands.keys()];
  }

  /** The sessions open now. */
  get sessions(): readonly QmpSession[] {
    return [...this.#sessions];
  }

  /** A client connected: its session greets it. An in-process client passes its own peer. */
  connect(peer: QmpPeer): QmpSession {
    if (this.#closed) throw new ConfigError('the QMP server is closed');
    const session = new QmpSession({
      greeting: () => ({ QMP: { version: QMP_SCHEMA_VERSION, capabilities: [] } }),
      command: (name) => this.#commands.get(name),
      run: (command, args, fds) => this.#run(command, args, fds),
      closeFd: (fd) => this.closeFd(fd),
      ended: (s) => this.#sessions.delete(s),
    }, peer, this.options.limits);
    this.#sessions.add(session);
    return session;
  }

  /**
   * Serve on a Unix socket (`-qmp unix:PATH,server=on,wait=off`).
   * @throws ConfigError naming the path when it cannot listen there.
   */
  async listen(path: string, options: QmpSocketOptions = {}): Promise<QmpListener> {
    if (this.#closed) throw new ConfigError('the QMP server is closed');
    const listener = await listenUnix(path, (peer) => this.connect(peer), { adoptFd: this.#adoptFd(), ...options });
    this.#listeners.push(listener);
    return listener;
  }

  /** Send an event to every client that negotiated capabilities, stamped with the time now. */
  emit(event: string, data?: Record<string, unknown>): void {
    // Wall-clock time, as QEMU's g_get_real_time: performance.timeOrigin + now() is monotonic
    // time since start, which drifts from the wall clock a client compares with (milliseconds
    // are all the wall clock Node gives).
    const micros = Date.now() * 1000;
    const timestamp = { seconds: Math.floor(micros / 1e6), microseconds: micros % 1e6 };
    const message = data === undefined ? { event, timestamp } : { event, data, timestamp };
    for (const s of this.#sessions) if (s.negotiated) s.event(message);
  }

  /** Close a descriptor a client passed, on the VM's host. */
  closeFd(fd: number): void {
    this.vmm.host.close(fd);
  }

  /** Keep `fd` open for object `id` until object-del. */
  keepObjectFd(id: string, fd: number): void {
    this.#objectFds.set(id, fd);
  }

  /** Object `id` is gone: close the descriptor kept for it. */
  releaseObjectFd(id: string): void {
    const fd = this.#objectFds.get(id);
    if (fd === undefined) return;
    this.#objectFds.delete(id);
    this.closeFd(fd);
  }

  /** `quit` was answered: the VM shuts down. */
  quit(): void {
    this.runState.shutdown();
    this.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
    this.options.onQuit?.();
  }

  /** An incoming migration failed with exit-on-error. */
  incomingFailed(error: unknown): void {
    this.options.onIncomingFailed?.(error);
  }

  /**
   * Stop: cancel a migration QMP started and wait for it, end every session (closing what the
   * clients passed), stop listening, stop following the VM. The VM itself is left as it is.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Sessions first: a listening socket's close waits for its connections to end.
    for (const s of [...this.#sessions]) s.end();
    await Promise.all(this.#listeners.splice(0).map((l) => l.close()));
    await this.migration.dispose();
    this.#unforward();
    this.runState.dispose();
    this.pciSlots.dispose();
    this.qomPaths.dispose();
    this.fdSets.clear();
    for (const id of [...this.#objectFds.keys()]) {
      try {
        this.releaseObjectFd(id);
      } catch {
        // Already closed on the host.
      }
    }
  }

  /** How descriptors passed over a socket (this process's) become the VM host's, if they can. */
  #adoptFd(): ((fd: number) => number) | undefined {
    const host = this.vmm.host as HostKernel & { adoptProcessFd?: (fd: number) => number };
    if (host instanceof LinuxHost) return (fd) => fd;
    return typeof host.adoptProcessFd === 'function' ? (fd) => host.adoptProcessFd!(fd) : undefined;
  }

  async #run(command: QmpCommand, args: QmpArgs, fds: QmpClientFds): Promise<unknown> {
    return await command.run(args, { vmm: this.vmm, server: this, fds });
  }
}
