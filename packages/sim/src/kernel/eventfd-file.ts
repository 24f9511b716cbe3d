// eventfd(2): a 64-bit counter that interrupts are signalled on.

import { EFD_NONBLOCK, EFD_SEMAPHORE } from '@vmmkit/core/uapi';
import type { Census } from './census.js';
import { fail } from './sim-errno.js';
import { SimFile } from './sim-file.js';

const MAX = 0xffff_ffff_ffff_fffen;

export class EventFdFile extends SimFile {
  readonly kind = undefined;
  #count: bigint;
  /** Called whenever the counter becomes non-zero: how SimHost reports readiness. */
  readonly readableListeners = new Set<() => void>();

  constructor(
    initval: number,
    private readonly flags: number,
    private readonly census: Census,
  ) {
    super();
    this.#count = BigInt(initval);
    census.add('eventfd');
  }

  /** The counter, for tests and for the kernel side. */
  get count(): bigint {
    return this.#count;
  }

  /** eventfd_signal from kernel code (an interrupt). Saturates instead of failing. */
  signal(n = 1n): void {
    this.#count = this.#count + n > MAX ? MAX : this.#count + n;
    for (const listener of this.readableListeners) listener();
  }

  override read(buf: Uint8Array): number {
    if (buf.byteLength < 8) fail('EINVAL', 'eventfd reads are 8 bytes');
    // A blocking read of an empty eventfd would sleep forever in a single-threaded model.
    if (this.#count === 0n) fail('EAGAIN', this.flags & EFD_NONBLOCK ? undefined : 'blocking read of an empty eventfd');
    const value = this.flags & EFD_SEMAPHORE ? 1n : this.#count;
    this.#count -= value;
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, value, true);
    return 8;
  }

  override write(buf: Uint8Array): number {
    if (buf.byteLength < 8) fail('EINVAL', 'eventfd writes are 8 bytes');
    const value = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    if (value === 0xffff_ffff_ffff_ffffn) fail('EINVAL');
    if (this.#count + value > MAX) fail('EAGAIN', 'eventfd counter would overflow');
    this.signal(value);
    return 8;
  }

  protected override release(): void {
    this.readableListeners.clear();
    this.census.remove('eventfd');
  }
}
