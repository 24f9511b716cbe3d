// Two RAM channels that break the channel protocol in each way a destination must refuse, for
// the tests of channels on one thread and in worker threads alike.

import { expect } from 'vitest';
import { MigrationRefusedError, type MigrationStreamWriter, type RamChannelReceiver } from '../../src/index.js';

/** How the channels misbehave, what the case is called, and what the refusal must say. */
export const HOSTILE_CHANNELS = [
  ['two connections that say they are the same channel', 'twice', /RAM channel 1 of 2 opened twice/],
  ['a channel of another migration', 'count', /RAM channel connection \d says it is channel \d of 3; this destination has 2/],
  ['a device record on a channel', 'device', /RAM channel 1: DEVICE_DATA record at offset \d+ \(a channel carries RAM_PAGES, RAM_ZERO and SYNC\)/],
  ['a SYNC that skips a pass', 'skip', /RAM channel 0: SYNC of pass 3 at offset \d+ after pass 1/],
  ['a channel that ends inside a pass', 'cut', /RAM channel 1 ended inside the pass after 1/],
] as const;

export type HostileChannels = (typeof HOSTILE_CHANNELS)[number][1];

/**
 * Send over two channels' `writers` what `how` names, while `receiver` takes passes 1 and 2: the
 * receiver must refuse it with a MigrationRefusedError saying `message`. Resolves once the
 * sender is done too (its own failures are expected: the receiver hangs up).
 */
export async function expectRefused(writers: readonly MigrationStreamWriter[], receiver: RamChannelReceiver, how: HostileChannels, message: RegExp, pageSize: number): Promise<void> {
  const page = new Uint8Array(pageSize).fill(5);
  const sent = (async () => {
    if (how === 'twice') await Promise.all(writers.map((w) => w.write({ name: 'CHANNEL', channel: 1, channels: 2 })));
    else if (how === 'count') await Promise.all(writers.map((w, channel) => w.write({ name: 'CHANNEL', channel, channels: 3 })));
    else await Promise.all(writers.map((w, channel) => w.write({ name: 'CHANNEL', channel, channels: 2 })));
    await Promise.all(writers.map((w) => w.write({ name: 'SYNC', pass: 1 })));
    if (how === 'device') await writers[1]!.write({ name: 'DEVICE_DATA', device: 0, payload: page });
    if (how === 'skip') await writers[0]!.write({ name: 'SYNC', pass: 3 });
    if (how === 'cut') {
      await writers[1]!.write({ name: 'RAM_PAGES', block: 0, first: 0, count: 1, payload: page });
      await writers[1]!.end();
    }
    await Promise.all(writers.map((w) => w.flush()));
  })().catch(() => undefined);
  const outcome = (async () => {
    await receiver.pass(1);
    await receiver.pass(2);
  })();
  await expect(outcome).rejects.toBeInstanceOf(MigrationRefusedError);
  await expect(outcome).rejects.toThrow(message);
  await sent;
}
