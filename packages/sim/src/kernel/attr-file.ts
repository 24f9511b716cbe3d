// A read-only text file: a sysfs attribute, or a directory opened for reading.

import { fail } from './sim-errno.js';
import { SimFile } from './sim-file.js';

export class AttrFile extends SimFile {
  readonly kind = undefined;
  #position = 0;

  constructor(private readonly content: () => string) {
    super();
  }

  override read(buf: Uint8Array): number {
    const n = this.pread(buf, BigInt(this.#position));
    this.#position += n;
    return n;
  }

  override pread(buf: Uint8Array, offset: bigint): number {
    if (offset < 0n) fail('EINVAL');
    const bytes = new TextEncoder().encode(this.content());
    const from = Number(offset > BigInt(bytes.byteLength) ? BigInt(bytes.byteLength) : offset);
    const n = Math.min(buf.byteLength, bytes.byteLength - from);
    buf.set(bytes.subarray(from, from + n));
    return n;
  }

  override write(): number {
    return fail('EACCES', 'sysfs attribute is read-only here');
  }
}

/** /dev/null: reads end at once, writes vanish, ioctls are unknown. */
export class NullFile extends SimFile {
  readonly kind = undefined;
  override read(): number {
    return 0;
  }
  override write(buf: Uint8Array): number {
    return buf.byteLength;
  }
}

/** A directory opened with open(2): readable only through readdir. */
export class DirFile extends SimFile {
  readonly kind = undefined;
  override read(): number {
    return fail('EISDIR');
  }
}
