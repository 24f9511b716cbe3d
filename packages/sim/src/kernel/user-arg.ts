// An ioctl's pointer argument as the kernel sees it: either the struct bytes the caller passed
// (written back in place), or a user address into the simulated address space. Access past
// what the caller provided is EFAULT, as copy_from_user would report.

import type { UserMemory } from '../memory/user-memory.js';
import { fail } from './sim-errno.js';
import type { IoctlArg } from './sim-file.js';

export class UserArg {
  private constructor(
    private readonly bytes: Uint8Array | undefined,
    private readonly va: bigint | undefined,
    private readonly memory: UserMemory,
  ) {}

  /** The user buffer behind an ioctl argument. */
  static of(arg: IoctlArg, memory: UserMemory): UserArg {
    if (arg instanceof Uint8Array) return new UserArg(arg, undefined, memory);
    const va = BigInt(arg);
    if (va === 0n) fail('EFAULT', 'NULL pointer argument');
    return new UserArg(undefined, va, memory);
  }

  /** copy_from_user of `length` bytes at `offset`. */
  read(offset: number, length: number): Uint8Array {
    if (this.bytes) {
      if (offset < 0 || offset + length > this.bytes.byteLength) fail('EFAULT', `read past the ${this.bytes.byteLength}-byte argument`);
      return this.bytes.slice(offset, offset + length);
    }
    return this.memory.read(this.va! + BigInt(offset), length);
  }

  /** copy_to_user at `offset`. */
  write(offset: number, data: Uint8Array): void {
    if (this.bytes) {
      if (offset < 0 || offset + data.byteLength > this.bytes.byteLength) fail('EFAULT', `write past the ${this.bytes.byteLength}-byte argument`);
      this.bytes.set(data, offset);
      return;
    }
    this.memory.write(this.va! + BigInt(offset), data);
  }

  /** get_user of a __u32. */
  u32(offset = 0): number {
    return new DataView(this.read(offset, 4).buffer).getUint32(0, true);
  }

  /** get_user of an __s32. */
  s32(offset = 0): number {
    return new DataView(this.read(offset, 4).buffer).getInt32(0, true);
  }
}
