// What a QMP command is to the server: its name, its arguments' schema, and what it does with a
// VMM. Commands run one at a time per client, in the order they arrive (QEMU without OOB).

import type { Vmm } from '@vmmkit/core';
import type { QmpArgs, QmpSchema } from './qmp-args.js';
import type { QmpServer } from '../qmp-server.js';

/** The file descriptors of one client (QEMU's per-monitor fds). */
export interface QmpClientFds {
  /**
   * Take the next descriptor that came with the client's messages (SCM_RIGHTS): the command owns
   * it from here. Undefined when none came.
   * @throws QmpError when the one that came could not be taken over (saying which and why).
   */
  takeReceived(): number | undefined;
  /** Descriptors the client named with getfd: the client's until closefd or it goes away. */
  readonly named: Map<string, number>;
}

/** What a running command can reach. */
export interface QmpCommandContext {
  readonly vmm: Vmm;
  readonly server: QmpServer;
  readonly fds: QmpClientFds;
}

/** A command. */
export interface QmpCommand {
  /** The name a client executes (`query-status`, `device_add`). */
  readonly name: string;
  /** Its arguments; a command that takes none has `{}`. */
  readonly args: QmpSchema;
  /** Members beyond the schema are allowed and passed on (device_add, object-add). */
  readonly extraArgs?: boolean;
  /**
   * Run; the value is the `return` member (`{}` for commands without a result).
   * @throws QmpError with the class the client sees; any other error becomes a GenericError
   *   with its message.
   */
  run(args: QmpArgs, context: QmpCommandContext): unknown;
}
