// `run --qmp`: the VM's QMP server on a Unix socket, and what QMP may ask of the process: quit,
// or (migrate-incoming with exit-on-error) give up after a failed incoming migration.

import type { Vmm } from '@vmmkit/core';
import { QmpServer } from '@vmmkit/qmp';
import type { CliIo } from '../cli-io.js';

/** The QMP server of a running `vmmkit run`. */
export interface QmpControl {
  /** Aborts when QMP asked the process to end; the reason says why. */
  readonly signal: AbortSignal;
  /** Whether the end is a failure (an incoming migration failed with exit-on-error). */
  readonly failed: boolean;
  close(): Promise<void>;
}

/**
 * Serve QMP for `vmm` on `path`.
 * @param incoming how the VM waits for an incoming migration: `defer` for migrate-incoming,
 *   `started` when `run --incoming URI` receives it.
 * @throws ConfigError naming the path when it cannot listen there.
 */
export async function startQmp(vmm: Vmm, path: string, incoming: 'defer' | 'started' | undefined, io: CliIo): Promise<QmpControl> {
  const controller = new AbortController();
  let failed = false;
  const server = new QmpServer(vmm, {
    incoming,
    onQuit: () => controller.abort('QMP quit'),
    onIncomingFailed: (e) => {
      failed = true;
      controller.abort(`the incoming migration failed: ${e instanceof Error ? e.message : String(e)}`);
    },
  });
  try {
    await server.listen(path);
  } catch (e) {
    await server.close();
    throw e;
  }
  // Scripts may wait for this line (or for the socket to appear) before connecting.
  io.out(`QMP listening on ${path}`);
  return {
    signal: controller.signal,
    get failed() {
      return failed;
    },
    close: () => server.close(),
  };
}
