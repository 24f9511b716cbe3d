// Stopping on the user's word: SIGINT/SIGTERM become an AbortSignal that waits, accepts and
// migrations honour, and waiting for "a duration or an interrupt" keeps the process alive.

import { setTimeout as delay } from 'node:timers/promises';
import type { CliIo } from '../cli-io.js';

/** An AbortSignal aborted (with the signal's name as its reason) on SIGINT or SIGTERM. */
export interface Interrupt {
  readonly signal: AbortSignal;
  /** Stop listening for signals. */
  dispose(): void;
}

/** Watch for the user asking the CLI to stop. */
export function watchInterrupt(io: CliIo): Interrupt {
  const controller = new AbortController();
  const off = io.onInterrupt((name) => controller.abort(name));
  return { signal: controller.signal, dispose: off };
}

/**
 * Wait `ms` (forever when undefined) unless `signal` aborts first; says which happened.
 * The wait keeps the event loop alive: a signal listener alone would not.
 */
export async function waitFor(ms: number | undefined, signal: AbortSignal): Promise<'elapsed' | 'interrupted'> {
  if (signal.aborted) return 'interrupted';
  if (ms !== undefined) {
    return delay(ms, undefined, { signal }).then(
      () => 'elapsed' as const,
      () => 'interrupted' as const, // delay rejects only with the AbortError of `signal`
    );
  }
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    return 'interrupted';
  } finally {
    clearInterval(keepAlive);
  }
}

/** `promise`, or undefined as soon as `signal` aborts (the promise's later outcome is ignored). */
export async function unlessInterrupted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  let onAbort!: () => void;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
