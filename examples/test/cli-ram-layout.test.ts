// -m as guest-physical memory: q35's split around the 32-bit PCI hole.

import { describe, expect, it } from 'vitest';
import { guestRamLayout } from '../src/cli/vm/guest-ram-layout.js';

const MiB = 1n << 20n;
const GiB = 1n << 30n;

describe('guestRamLayout (q35)', () => {
  it('keeps RAM below 2.75 GiB in one block at 0', () => {
    expect(guestRamLayout(128n * MiB)).toEqual([{ gpa: 0n, size: 128n * MiB, name: 'ram-low' }]);
    expect(guestRamLayout(0xb000_0000n - 4096n)).toEqual([{ gpa: 0n, size: 0xb000_0000n - 4096n, name: 'ram-low' }]);
  });

  it('from 2.75 GiB on, puts 2 GiB below the hole and the rest from 4 GiB', () => {
    expect(guestRamLayout(0xb000_0000n)).toEqual([
      { gpa: 0n, size: 2n * GiB, name: 'ram-low' },
      { gpa: 4n * GiB, size: 0xb000_0000n - 2n * GiB, name: 'ram-high' },
    ]);
    expect(guestRamLayout(8n * GiB)).toEqual([
      { gpa: 0n, size: 2n * GiB, name: 'ram-low' },
      { gpa: 4n * GiB, size: 6n * GiB, name: 'ram-high' },
    ]);
  });
});
