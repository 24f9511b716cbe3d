// An iommufd ioctl's command buffer (struct iommufd_ucmd): the extensible-struct rules of
// iommufd_fops_ioctl and copy_struct_from_user, and iommufd_ucmd_respond (drivers/iommu/iommufd/main.c).

import { InvariantError } from '@vmmkit/core';
import type { StructMembers, StructType, StructValue, StructInput } from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import type { UserMemory } from '../memory/user-memory.js';

/** The command as the kernel holds it: a zero-extended copy of the user's struct. */
export class Ucmd<D extends StructMembers> {
  private constructor(
    private readonly user: UserArg,
    /** The size the caller declared in the struct's first __u32. */
    readonly userSize: number,
    readonly struct: StructType<D>,
    /** The kernel's copy, exactly `struct.size` bytes. */
    readonly cmd: Uint8Array,
  ) {}

  /**
   * Read the user's struct: EINVAL below `minSize`, E2BIG for non-zero bytes past the kernel's
   * struct, EFAULT where the user's buffer ends early; a shorter struct is zero-extended.
   */
  static read<D extends StructMembers>(user: UserArg, userSize: number, struct: StructType<D>, minSize: number): Ucmd<D> {
    if (userSize < minSize) fail('EINVAL', `size ${userSize} is below the ${minSize} bytes ${struct.cType} needs`);
    if (userSize > struct.size) {
      const tail = user.read(struct.size, userSize - struct.size);
      if (tail.some((b) => b !== 0)) fail('E2BIG', `non-zero bytes past the ${struct.size} bytes of ${struct.cType}`);
    }
    const cmd = new Uint8Array(struct.size);
    cmd.set(user.read(0, Math.min(userSize, struct.size)));
    return new Ucmd(user, userSize, struct, cmd);
  }

  get<K extends keyof StructValue<D> & string>(member: K): StructValue<D>[K] {
    return this.struct.get(this.cmd, member);
  }

  set<K extends keyof StructValue<D> & string>(member: K, value: NonNullable<StructInput<D>[K]>): void {
    this.struct.set(this.cmd, member, value as never);
  }

  /** iommufd_ucmd_respond: copy back min(user size, struct size) bytes. */
  respond(): void {
    this.user.write(0, this.cmd.subarray(0, Math.min(this.userSize, this.struct.size)));
  }

  /** The user buffer, for ioctls that write single fields back themselves (IOMMU_OPTION). */
  get userArg(): UserArg {
    return this.user;
  }
}

/** The command type of a struct: `UcmdOf<typeof iommu_ioas_map>`. */
export type UcmdOf<S> = Ucmd<S extends StructType<infer D> ? D : never>;

/** An entry of the iommufd ioctl table (struct iommufd_ioctl_op). */
export interface IommufdOp<C> {
  readonly request: number;
  readonly struct: StructType<any>;
  /** offsetofend of the last member a caller must provide. */
  readonly minSize: number;
  execute(ctx: C, ucmd: Ucmd<any>): number;
}

/** offsetofend(struct, member). */
export function offsetofend(struct: StructType<any>, member: string): number {
  const m = (struct.members as Record<string, { offset: number; size: number }>)[member];
  if (!m) throw new InvariantError(`${struct.cType} has no member ${member}`);
  return m.offset + m.size;
}

/**
 * iommu_copy_struct_from_user of driver data: EINVAL below offsetofend(min member) or past the
 * kernel's struct, then copy_struct_from_user (EFAULT; a shorter struct is zero-extended).
 * Returns the kernel's copy, `struct.size` bytes.
 */
export function readStructFromUser(memory: UserMemory, uptr: bigint, len: number, struct: StructType<any>, minMember: string): Uint8Array {
  if (len < offsetofend(struct, minMember) || len > struct.size) fail('EINVAL', `${len} bytes do not fit ${struct.cType}`);
  const out = new Uint8Array(struct.size);
  out.set(memory.read(uptr, Math.min(len, struct.size)));
  return out;
}
