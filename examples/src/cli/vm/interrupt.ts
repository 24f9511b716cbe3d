// Stopping on the user's word: SIGINT/SIGTERM become an AbortSignal that waits, accepts and
// migrations honour, and waiting for "a duration or an interrupt" keeps the process alive.

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
 * The longest delay one Node timer takes (2^31 - 1 ms, about 24.8 days): a longer one fires
 * after 1 ms instead, with a TimeoutOverflowWarning.
 */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * Wait `ms` (forever when undefined) unless `signal` aborts first; says which happened.
 * A wait longer than one timer can take is served by re-arming the timer until it has all
 * elapsed. The wait keeps the event loop alive: a signal listener alone would not.
 */
export async function waitFor(ms: number | undefined, signal: AbortSignal): Promise<'elapsed' | 'interrupted'> {
  if (signal.aborted) return 'interrupted';
  let timer: ReturnType<typeof setTimeout> | undefined;
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  let onAbort!: () => void;
  try {
    return await new Promise((resolve) => {
      onAbort = () => resolve('interrupted');
      signal.addEventListener('abort', onAbort, { once: true });
      if (ms === undefined) {
        keepAlive = setInterval(() => undefined, MAX_TIMER_DELAY_MS);
        return;
      }
      let remaining = ms;
      const arm = (): void => {
        const step = Math.min(remaining, MAX_TIMER_DELAY_MS);
        timer = setTimeout(() => {
          remaining -= step;
          if (remaining > 0) arm();
          else resolve('elapsed');
        }, step);
      };
      arm();
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    clearTimeout(timer);
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
