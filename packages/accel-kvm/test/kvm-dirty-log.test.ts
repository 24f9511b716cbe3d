// KVM's dirty log as the migration's RAM dirty-log provider: every page the guest changed while
// logging is in the RAM block's log after a sync (checked against a snapshot of RAM), pages it
// did not touch are not, logging stops cleanly, and a page the provider is made to drop is
// exactly the one missing.

import { describe, expect, it } from 'vitest';
import { ARENA, kvmMissing, kvmRig } from './kvm-rig.js';

/** Pages of `now` that differ from `before`. */
function changedPages(before: Uint8Array, now: Uint8Array, pageSize: number): number[] {
  const pages: number[] = [];
  for (let p = 0; p < before.byteLength / pageSize; p++) {
    const a = before.subarray(p * pageSize, (p + 1) * pageSize);
    const b = now.subarray(p * pageSize, (p + 1) * pageSize);
    if (!a.every((x, i) => x === b[i])) pages.push(p);
  }
  return pages;
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('the KVM dirty log', { timeout: 30_000 }, () => {
  it('has every page the guest changed, and only pages it wrote', async () => {
    const rig = await kvmRig({ seed: 99, arenaPages: 1024 });
    const { memory, vm } = rig;
    const block = memory.blocks[0]!;
    try {
      memory.startDirtyLog();
      await vm.dirtyLog.start(memory);
      expect(vm.memslots.logging).toBe(true);
      const before = block.mapping.bytes.slice();
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.last >= 256 * 8);
      await rig.vcpu.pause();
      const newly = await vm.dirtyLog.sync(memory);
      const changed = changedPages(before, block.mapping.bytes, memory.pageSize);
      expect(changed.length).toBeGreaterThan(100);
      const dirty: number[] = [];
      block.dirty!.forEachSetBit((p) => dirty.push(p));
      // Nothing missed; and the log holds only arena pages (the code page is only read).
      expect(dirty).toEqual(expect.arrayContaining(changed));
      expect(newly).toBe(dirty.length);
      const arenaFirst = Number(ARENA) / memory.pageSize;
      expect(dirty.every((p) => p >= arenaFirst && p < arenaFirst + 1024)).toBe(true);
      // The next sync of a paused guest finds nothing: the harvest cleared and re-protected.
      block.dirty!.clear();
      expect(await vm.dirtyLog.sync(memory)).toBe(0);
      vm.dirtyLog.stop(memory);
      expect(vm.memslots.logging).toBe(false);
      expect(vm.memslots.slots[0]!.flags).toBe(0);
    } finally {
      memory.stopDirtyLog();
      await rig.close();
    }
  });

  it('a page the provider drops is exactly what the log misses', async () => {
    const rig = await kvmRig({ seed: 5, arenaPages: 64 });
    const { memory, vm } = rig;
    const block = memory.blocks[0]!;
    try {
      memory.startDirtyLog();
      await vm.dirtyLog.start(memory);
      const before = block.mapping.bytes.slice();
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.last >= 256 * 4);
      await rig.vcpu.pause();
      const changed = changedPages(before, block.mapping.bytes, memory.pageSize);
      vm.dirtyLog.fault = { block: 'low', page: changed[0]! };
      await vm.dirtyLog.sync(memory);
      const missed = changed.filter((p) => !block.dirty!.test(p));
      expect(missed).toEqual([changed[0]]);
      vm.dirtyLog.stop(memory);
    } finally {
      memory.stopDirtyLog();
      await rig.close();
    }
  });
});
