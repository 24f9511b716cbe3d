// `vmmkit serve --device edu|nic --socket PATH`: a vfio-user device server for one of the
// simulated host's models, on this machine's kernel, until SIGINT/SIGTERM.

import { LinuxHost } from '@vmmkit/core';
import { createModel } from '@vmmkit/sim';
import { serveSocket } from '@vmmkit/vfio-user-server';
import type { ServeDevice } from '../args/command-line.js';
import type { CliIo } from '../cli-io.js';
import { EXIT_OK } from '../exit-codes.js';

/** Serve `device` at `socket`; resolves with the exit status once interrupted and cleaned up. */
export async function serveCommand(options: { readonly device: ServeDevice; readonly socket: string }, io: CliIo): Promise<number> {
  const model = createModel({ model: options.device });
  const served = serveSocket(options.socket, { model, host: new LinuxHost(), log: (line) => io.err(`vmmkit serve: ${line}`) });
  const ids = new DataView(model.config.buffer, model.config.byteOffset);
  const id = `${hex(ids.getUint16(0, true))}:${hex(ids.getUint16(2, true))}`;
  io.out(`serving ${options.device} (${id}) on ${options.socket}`);
  const signal = await new Promise<string>((resolve) => {
    const stop = io.onInterrupt((s) => {
      stop();
      resolve(s);
    });
  });
  await served.close();
  io.out(`stopped on ${signal}; removed ${options.socket}`);
  return EXIT_OK;
}

const hex = (v: number): string => v.toString(16).padStart(4, '0');
