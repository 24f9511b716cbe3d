// The destination VMM of a vfio-user migration in a process of its own (fixtures/
// vfio-user-destination.mjs): started with the socket of its nic's server, it says when it
// listens and what it received; the test reads its report, then lets it close or kills it.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const FIXTURE = join(import.meta.dirname, 'fixtures/vfio-user-destination.mjs');

/** What the destination process says when the migration ended there. */
export interface DestinationReport {
  readonly step: 'done';
  readonly ok: boolean;
  /** SHA-256 of its guest RAM when its nic loaded its state (ok only). */
  readonly atLoad?: string;
  readonly running: boolean;
  readonly pages?: number;
  readonly deviceBytes?: number;
  /** The errors of its migration:failed events (not ok). */
  readonly failures?: string[];
  readonly deviceFailure?: { device: string; errno?: string };
  readonly error?: { name: string; message: string; cause?: { name: string; message: string } };
}

export interface DestinationProcess {
  readonly child: ChildProcess;
  /** Its nic's vfio-user device name (e.g. `vfio-user:/path/dst.sock`). */
  readonly device: string;
  /** Its report once the migration ended there; rejects when it exits first. */
  readonly report: Promise<DestinationReport>;
  /** Ask it to close its VM and exit; resolves with its exit code once its pipes are closed. */
  close(): Promise<number | null>;
  /** Kill it and wait until it is gone (its pipes closed). */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Start the destination VMM; resolves once it listens at `uri` (within `timeoutMs`). */
export async function startDestination(uri: string, nicSocket: string, ramBytes: bigint, timeoutMs = 60_000): Promise<DestinationProcess> {
  const child = spawn(process.execPath, [FIXTURE, uri, nicSocket, String(ramBytes)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const exited = gone.then(() => new Error(`the destination VMM exited (${child.exitCode ?? child.signalCode}) before it said so: ${stderr}`));
  const lines: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
    wake?.();
  });
  const step = async (name: string): Promise<Record<string, unknown>> => {
    for (;;) {
      const found = lines.find((l) => l.step === name);
      if (found) return found;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await gone;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the destination VMM did not listen within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
  });
  let listening: Record<string, unknown>;
  try {
    listening = await Promise.race([step('listening'), exited.then((e) => Promise.reject(e)), late]);
  } catch (e) {
    await kill();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  const report = Promise.race([step('done') as Promise<unknown> as Promise<DestinationReport>, exited.then((e) => Promise.reject(e))]);
  report.catch(() => undefined);
  return {
    child, device: String(listening.device), report, kill,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.stdin!.end('close\n');
      await gone;
      return child.exitCode;
    },
  };
}
