// Memory the kernel writes a report into (a dirty bitmap): the bytes themselves when the host can
// map them (HostKernel.mapMemory), else an mmap'd bounce buffer copied back afterwards.

import type { HostKernel, HostMapping } from '../host/host-kernel.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../host/posix.js';

/**
 * Give `bytes` a user address for the duration of `use(addr)`. Whatever the kernel wrote there
 * ends up in `bytes`; the mapping is gone when this returns, even if `use` throws.
 */
export async function withKernelBuffer<T>(host: HostKernel, bytes: Uint8Array, use: (addr: bigint) => Promise<T> | T): Promise<T> {
  if (bytes.byteLength === 0) return use(0n);
  if (host.mapMemory) {
    const mapping = host.mapMemory(bytes);
    try {
      return await use(mapping.addr);
    } finally {
      mapping.unmap();
    }
  }
  const bounce: HostMapping = host.mmap(bytes.byteLength, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  try {
    bounce.bytes.set(bytes);
    const result = await use(bounce.addr);
    bytes.set(bounce.bytes);
    return result;
  } finally {
    bounce.unmap();
  }
}
