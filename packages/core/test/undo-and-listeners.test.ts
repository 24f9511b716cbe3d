import { describe, expect, it } from 'vitest';
import { AddressSpace, UndoStack, type MemorySection, type RamBlock } from '../src/index.js';

const section = (start: bigint): MemorySection => ({
  kind: 'ram', start, size: 0x1000n, offset: 0n, readonly: false, block: { name: `b${start}` } as RamBlock,
});

describe('UndoStack', () => {
  it('undoes newest first on failure and rethrows the original error', async () => {
    const log: string[] = [];
    await expect(
      UndoStack.run(async (undo) => {
        undo.push(() => void log.push('a'));
        undo.push(async () => void log.push('b'));
        throw new Error('step 3 failed');
      }),
    ).rejects.toThrow('step 3 failed');
    expect(log).toEqual(['b', 'a']);
  });

  it('keeps going when an undo fails, and forgets everything on success', async () => {
    const log: string[] = [];
    const undo = new UndoStack();
    undo.push(() => void log.push('a'));
    undo.push(() => {
      throw new Error('undo b failed');
    });
    undo.push(() => void log.push('c'));
    await expect(undo.unwind()).rejects.toThrow('undo b failed');
    expect(log).toEqual(['c', 'a']);
    expect(await UndoStack.run(async (u) => (u.push(() => void log.push('x')), 42))).toBe(42);
    expect(log).not.toContain('x');
  });
});

describe('AddressSpace', () => {
  it('replays sections to a new listener and deletes them when it leaves', async () => {
    const as = new AddressSpace('test');
    await as.addSection(section(0n));
    const seen: string[] = [];
    const l = { regionAdd: (s: MemorySection) => void seen.push(`+${s.start}`), regionDel: (s: MemorySection) => void seen.push(`-${s.start}`) };
    await as.addListener(l);
    await as.addSection(section(0x1000n));
    await as.removeListener(l);
    expect(seen).toEqual(['+0', '+4096', '-4096', '-0']);
  });

  it('leaves nothing behind when a listener refuses a section', async () => {
    const as = new AddressSpace('test');
    const a: string[] = [];
    await as.addListener({ regionAdd: (s) => void a.push(`+${s.start}`), regionDel: (s) => void a.push(`-${s.start}`) });
    await as.addListener({ regionAdd: () => Promise.reject(new Error('no room')) });
    await expect(as.addSection(section(0x2000n))).rejects.toThrow('no room');
    expect(a).toEqual(['+8192', '-8192']);
    expect(as.sections).toEqual([]);
  });

  it('undoes a partial replay when a new listener fails', async () => {
    const as = new AddressSpace('test');
    await as.addSection(section(0n));
    await as.addSection(section(0x1000n));
    const log: string[] = [];
    const failing = {
      regionAdd: (s: MemorySection) => {
        if (s.start === 0x1000n) throw new Error('map failed');
        log.push(`+${s.start}`);
      },
      regionDel: (s: MemorySection) => void log.push(`-${s.start}`),
    };
    await expect(as.addListener(failing)).rejects.toThrow('map failed');
    expect(log).toEqual(['+0', '-0']);
    await as.addSection(section(0x3000n)); // the failed listener is not registered
    expect(log).toEqual(['+0', '-0']);
  });
});
