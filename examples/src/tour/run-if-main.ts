// Run a tour step when its file is executed directly (`node examples/dist/tour/01-....js`), not
// when a test imports it. Errors print their message and exit 1, as a VMM's main would.

import { pathToFileURL } from 'node:url';

export function runIfMain(meta: ImportMeta, main: (args: string[]) => Promise<unknown>): void {
  if (!process.argv[1] || meta.url !== pathToFileURL(process.argv[1]).href) return;
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    process.exitCode = 1;
  });
}
