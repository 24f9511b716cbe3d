// The SHA-256 of guest RAM, so that the two ends of a migration can show they hold the same guest.

import { createHash } from 'node:crypto';
import type { GuestMemory } from '@vmmkit/core';

/** Views stay well below V8's typed-array limit and keep the hash streaming. */
const CHUNK = 64 << 20;

/** SHA-256 (hex) of every RAM block's bytes, in guest-physical order. */
export function ramHash(memory: GuestMemory): string {
  const hash = createHash('sha256');
  const blocks = [...memory.blocks].sort((a, b) => (a.gpa < b.gpa ? -1 : 1));
  for (const block of blocks) {
    for (let offset = 0n; offset < block.size; offset += BigInt(CHUNK)) {
      const length = Number(block.size - offset < BigInt(CHUNK) ? block.size - offset : BigInt(CHUNK));
      hash.update(memory.view(block.gpa + offset, length));
    }
  }
  return hash.digest('hex');
}
