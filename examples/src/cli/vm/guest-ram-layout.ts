// Where guest RAM goes in guest-physical memory for a given -m, as QEMU's q35 machine lays it
// out (pc_q35_init): below 4 GiB up to the PCI hole, the rest from 4 GiB up.

import type { RamSpec } from '@vmmkit/core';

const GIB = 1n << 30n;
const FOUR_GIB = 4n * GIB;

/** The RAM blocks of a guest with `size` bytes of RAM. */
export function guestRamLayout(size: bigint): RamSpec[] {
  // q35 keeps the 32-bit PCI hole from 2 GiB when the guest has at least 2.75 GiB, else from 2.75 GiB.
  const lowmem = size >= 0xb000_0000n ? 2n * GIB : 0xb000_0000n;
  if (size <= lowmem) return [{ gpa: 0n, size, name: 'ram-low' }];
  return [
    { gpa: 0n, size: lowmem, name: 'ram-low' },
    { gpa: FOUR_GIB, size: size - lowmem, name: 'ram-high' },
  ];
}
