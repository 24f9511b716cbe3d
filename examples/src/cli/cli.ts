// The vmmkit CLI as a function of its arguments: parse, run the command, and turn what happened
// into an exit status (0 done, 1 the work failed, 2 bad usage). main.ts binds it to the process;
// the tests call it directly.

import { parseCommandLine } from './args/command-line.js';
import { USAGE } from './args/usage.js';
import { UsageError } from './args/usage-error.js';
import type { CliIo } from './cli-io.js';
import { capsCommand } from './commands/caps-command.js';
import { migrateCommand } from './commands/migrate-command.js';
import { runCommand } from './commands/run-command.js';
import { serveCommand } from './commands/serve-command.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.js';

/** Run `vmmkit <argv...>`; resolves with the exit status (never rejects). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const line = parseCommandLine(argv);
    switch (line.command) {
      case 'help':
        for (const text of USAGE.trimEnd().split('\n')) io.out(text);
        return EXIT_OK;
      case 'caps':
        return await capsCommand(line, io);
      case 'run':
        return await runCommand(line, io);
      case 'migrate':
        return await migrateCommand(line, io);
      case 'serve':
        return await serveCommand(line, io);
    }
  } catch (e) {
    return reportFailure(e, io);
  }
}

function reportFailure(e: unknown, io: CliIo): number {
  if (e instanceof UsageError) {
    io.err(e.message);
    io.err("Try 'vmmkit help' for usage.");
    return EXIT_USAGE;
  }
  // vmmkit's errors carry complete messages (the device, the step, the errno, the blocker).
  io.err(`vmmkit: ${e instanceof Error ? e.message : String(e)}`);
  if (process.env.VMMKIT_DEBUG && e instanceof Error && e.stack) io.err(e.stack);
  return EXIT_FAILURE;
}
