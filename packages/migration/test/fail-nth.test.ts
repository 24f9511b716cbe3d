// Fail the 1st, 2nd, ... Nth system call of every step of an assigned device's life and of a live
// migration, with no hand-kept list of calls: each phase's ioctls are counted in a clean run,
// then each is failed in turn. Each failure must come out as a typed error naming the device (or
// its container), the step and the errno; leave the source running with the host's census back
// at its baseline; and the source must then migrate successfully (issue 11).

import { describe, expect, it } from 'vitest';
import { countPhase, failEachCall, PHASES, VARIANTS } from './fail-nth-rig.js';

describe.each(VARIANTS)('fail the nth call of a migration: $name', (variant) => {
  it.each(PHASES)('$name', async (phase) => {
    const calls = await countPhase(variant, phase);
    expect(calls, 'the phase makes calls').toBeGreaterThan(0);
    await failEachCall(variant, phase, calls);
  }, 120_000);
});
