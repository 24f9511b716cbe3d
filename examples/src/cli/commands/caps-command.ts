// `vmmkit caps [--sim] [--json]`: what this host offers VMMs. Always succeeds when the host could
// be asked at all: a host without VFIO is an answer, not a failure.

import { probeHostCaps } from '../caps/probe-host-caps.js';
import { formatHostCaps } from '../caps/format-caps.js';
import type { CliIo } from '../cli-io.js';
import { EXIT_OK } from '../exit-codes.js';
import { openHost } from '../vm/cli-host.js';

/** Probe the host and print the report, as a table or (`json`) as one JSON document. */
export async function capsCommand(options: { readonly sim: boolean; readonly json: boolean }, io: CliIo): Promise<number> {
  const caps = await probeHostCaps(openHost(options.sim));
  if (options.json) io.out(JSON.stringify(caps, null, 2));
  else for (const line of formatHostCaps(caps)) io.out(line);
  return EXIT_OK;
}
