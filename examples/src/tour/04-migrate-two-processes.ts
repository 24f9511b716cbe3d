// Tour 4: live migration between two processes. Run without arguments, it starts a destination
// process and a source process (this same file, with a role) joined by a Unix socket, and checks
// that the guest RAM the destination received hashes the same as the source's at switchover.
// Each process is its own VMM on its own simulated host, as two machines would be.
//
//   npx tsc -b examples && node examples/dist/tour/04-migrate-two-processes.js
//   node examples/dist/tour/04-migrate-two-processes.js destination tcp:0.0.0.0:4444   # on one machine
//   node examples/dist/tour/04-migrate-two-processes.js source tcp:dest-host:4444      # on the other

import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectMigration, listenMigration, migrateIncoming, migrateOutgoing } from '@vmmkit/migration';
import { ramHash, SimHost, simMachine, timedGuest } from '@vmmkit/sim';
import { createDemoVm } from '../guest/demo-vm.js';
import { runIfMain } from './run-if-main.js';

/** What each role prints as its last line. */
interface RoleResult {
  readonly role: 'source' | 'destination';
  readonly ramSha256: string;
  readonly pages: number;
}

export async function main(args: string[]): Promise<RoleResult[] | RoleResult> {
  const [role, uri] = args;
  if (role === 'destination' && uri) return destination(uri);
  if (role === 'source' && uri) return source(uri);
  if (role) throw new Error(`usage: 04-migrate-two-processes.js [destination|source URI]`);
  return both();
}

/** Start both roles as child processes and compare what they report. */
async function both(): Promise<RoleResult[]> {
  const uri = `unix:${join(tmpdir(), `vmmkit-tour-${process.pid}.sock`)}`;
  const self = fileURLToPath(import.meta.url);
  const dst = run(self, 'destination', uri);
  // The destination listens first; the source retries its connect briefly.
  const src = run(self, 'source', uri);
  const results = await Promise.all([dst, src]);
  const [d, s] = results;
  console.log(`destination received ${d.pages} pages; RAM ${d.ramSha256.slice(0, 16)}...`);
  console.log(`source at switchover:              RAM ${s.ramSha256.slice(0, 16)}...`);
  if (d.ramSha256 !== s.ramSha256) throw new Error('the destination RAM differs from the source RAM at switchover');
  console.log('verified: the destination RAM equals the source RAM at switchover');
  return results;
}

function run(script: string, role: string, uri: string): Promise<RoleResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, role, uri], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code === 0) resolve(JSON.parse(last) as RoleResult);
      else reject(new Error(`the ${role} process exited with ${code}: ${last}`));
    });
  });
}

async function destination(uri: string): Promise<RoleResult> {
  const listener = await listenMigration(uri);
  const { vmm } = await createDemoVm(new SimHost(simMachine()), { incoming: true, memoryMiB: 64 });
  try {
    const received = await migrateIncoming(vmm, await listener.accept({ timeoutMs: 30_000 }));
    return report({ role: 'destination', ramSha256: ramHash(vmm.memory), pages: received.pages });
  } finally {
    await listener.close();
    await vmm.close();
  }
}

async function source(uri: string): Promise<RoleResult> {
  const host = new SimHost(simMachine());
  const { vmm, nics } = await createDemoVm(host, { memoryMiB: 64 });
  const guest = timedGuest(vmm, host, nics, { writeBytesPerSecond: 64 << 10 });
  await guest.start();
  try {
    await new Promise((resolve) => setTimeout(resolve, 100)); // the guest runs a while first
    const result = await migrateOutgoing(vmm, await connectWithRetry(uri), { maxBandwidth: 256 << 20 });
    // The source is paused now: its RAM is the switchover state.
    return report({ role: 'source', ramSha256: ramHash(vmm.memory), pages: result.pagesSent });
  } finally {
    guest.stop();
    await vmm.close();
  }
}

async function connectWithRetry(uri: string) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await connectMigration(uri, { timeoutMs: 2000 });
    } catch (e) {
      if (attempt >= 50) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function report(result: RoleResult): RoleResult {
  console.log(JSON.stringify(result));
  return result;
}

runIfMain(import.meta, main);
