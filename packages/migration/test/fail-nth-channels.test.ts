// Fail the 1st, 2nd, ... Nth system call of each phase of a migration whose RAM pages travel on
// two RAM channels beside the main stream (issue 15), with no hand-kept list: each failure is a
// typed error, the source runs on with its census at its baseline, the destination holds
// nothing, every connection (main and channels, both sides) is closed, and the source then
// migrates over channels. On the simulated host the channels run on the main thread (its RAM is
// not process memory a worker could share); their threaded form is covered over real sockets and
// LinuxHost RAM in migration-channel-threads.test.ts.

import { describe, expect, it } from 'vitest';
import { countPhase, failEachCall, OPTIONS, PHASES, VARIANTS } from './fail-nth-rig.js';

const CHANNELS = { ...OPTIONS, channels: 2 };

describe.each(VARIANTS)('fail the nth call of a migration over 2 RAM channels: $name', (variant) => {
  it.each(PHASES)('$name', async (phase) => {
    const calls = await countPhase(variant, phase, CHANNELS);
    expect(calls, 'the phase makes calls').toBeGreaterThan(0);
    await failEachCall(variant, phase, calls, CHANNELS);
  }, 120_000);
});
