// Waiting for something a cancel may overtake: a connection being made, a source connecting.

import { MigrationCancelledError } from '@vmmkit/migration';

/**
 * `promise`'s value, unless `signal` aborts first: then rejects with MigrationCancelledError,
 * and whatever `promise` still yields is handed to `discard` (a connection made too late).
 */
export async function untilAborted<T>(promise: Promise<T>, signal: AbortSignal, discard: (value: T) => void): Promise<T> {
  if (signal.aborted) {
    void promise.then(discard, () => undefined);
    throw new MigrationCancelledError('the migration was cancelled');
  }
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      void promise.then(discard, () => undefined);
      reject(new MigrationCancelledError('the migration was cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
