// The `vmmkit` command's entry point (bin/vmmkit.js imports the built file): the process's
// arguments, streams and signals, and its exit status.


import { runCli } from './cli.js';
import { processIo } from './cli-io.js';

const status = await runCli(process.argv.slice(2), processIo());
process.exitCode = status;
// Everything the command opened is closed by now, so the process ends by itself; should a handle
// linger anyway, the status still stands and the command does not hang.
setTimeout(() => process.exit(status), 2000).unref();
