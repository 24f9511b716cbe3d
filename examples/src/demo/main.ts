// `npm run demo`: the demo VMM's entry point (the flags are in demo-args.ts, the run in run-demo.ts).

import { runDemo } from './run-demo.js';

process.exitCode = await runDemo(process.argv.slice(2));
