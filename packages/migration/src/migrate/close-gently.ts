// Ending a migration stream on failure: send the last word (the source's ABORT, the
// destination's ERROR) and end the connection so the peer reads it, but never wait long for a
// peer that is gone.

import type { MigrationTransport } from '../stream/migration-transport.js';

/** How long a failing side waits for its last word to go out before tearing the connection down. */
export const LAST_WORD_MS = 1000;

/** Run `send` then `end`; if either fails or takes too long, destroy the transport. */
export async function closeGently(transport: MigrationTransport, send: () => Promise<void>, end: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), LAST_WORD_MS)));
  try {
    const outcome = await Promise.race([send().then(end).then(() => 'sent' as const), late]);
    if (outcome === 'late') transport.destroy();
  } catch {
    transport.destroy();
  } finally {
    clearTimeout(timer);
  }
}

/** An error's message as the peer is told it (the stream's reasons are at most 4 KiB). */
export function lastWord(error: Error): string {
  const text = new TextEncoder().encode(error.message);
  return text.byteLength <= 4096 ? error.message : new TextDecoder().decode(text.subarray(0, 4093)).replace(/\uFFFD$/, '') + '...';
}
