// The vfio-user container (QEMU's hw/vfio-user/container.c): one per device, its DMA map and
// unmap hooks are DMA_MAP / DMA_UNMAP messages to the device's server. A mapping of guest RAM
// with a file (a memfd block) hands the server that file and the offset, so it maps the memory
// itself; a mapping of memory without a file goes without one, and the server reaches it with
// DMA_READ / DMA_WRITE messages the proxy answers.

import { VfioContainerBase, VfioError, type VfioContainerContext, type VfioContainerInfo } from '@vmmkit/core';
import { VFIO_DMA_UNMAP_FLAG_ALL } from '@vmmkit/core/uapi';
import {
  VFIO_USER_DMA_MAP, VFIO_USER_DMA_UNMAP, VFIO_USER_F_DMA_REGION_READ, VFIO_USER_F_DMA_REGION_WRITE, encodeDmaMap,
  encodeDmaUnmap,
} from '@vmmkit/core/vfio-user';
import type { VfioUserProxy } from './vfio-user-proxy.js';

export class VfioUserContainer extends VfioContainerBase {
  /** The windows the server holds, by IOVA (their sizes): max_dma_maps bounds how many. */
  readonly #windows = new Map<bigint, bigint>();

  constructor(context: VfioContainerContext, readonly proxy: VfioUserProxy) {
    super(context);
  }

  /** What VERSION negotiated stands for the kernel's limits: page sizes and the number of windows. */
  protected override doSetup(): VfioContainerInfo {
    const caps = this.proxy.capabilities;
    return { pgsizes: caps.pgsizes, dmaMaxMappings: caps.maxDmaMaps };
  }

  protected async doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    const where = this.space.memory.findByHva(vaddr, size);
    if (!where) {
      throw new VfioError(`map IOVA 0x${iova.toString(16)} in ${this.id}`, this.proxy.device, {
        errno: 'EFAULT', detail: `host address 0x${vaddr.toString(16)} (+0x${size.toString(16)}) is not guest RAM`,
      });
    }
    const limit = this.proxy.capabilities.maxDmaMaps;
    if (this.#windows.size >= limit) {
      // Refused here, as the kernel refuses a map past dma_entry_limit: the server said it takes no more.
      throw new VfioError(`map IOVA 0x${iova.toString(16)} in ${this.id}`, this.proxy.device, {
        errno: 'ENOSPC', detail: `the server takes at most ${limit} DMA windows (max_dma_maps), and holds ${this.#windows.size}`,
      });
    }
    const flags = VFIO_USER_F_DMA_REGION_READ | (readonly ? 0 : VFIO_USER_F_DMA_REGION_WRITE);
    const fd = where.block.fd;
    const reply = await this.proxy.request(
      VFIO_USER_DMA_MAP,
      encodeDmaMap({ flags, offset: fd === undefined ? 0n : where.offset, address: iova, size }),
      fd === undefined ? [] : [fd],
    );
    this.#closeFds(reply.fds);
    this.#windows.set(iova, size);
  }

  protected async doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void> {
    // A server that is gone took its mappings with it: nothing is left to unmap.
    if (this.proxy.failure) return;
    const payload = encodeDmaUnmap(all ? { flags: VFIO_DMA_UNMAP_FLAG_ALL, address: 0n, size: 0n } : { flags: 0, address: iova, size });
    try {
      this.#closeFds((await this.proxy.request(VFIO_USER_DMA_UNMAP, payload)).fds);
      if (all) this.#windows.clear();
      else if (this.#windows.get(iova) === size) this.#windows.delete(iova);
    } catch (e) {
      // The server unmaps whole windows and says ENOENT when none is at the range: nothing to
      // unmap, as the iommufd backend reads IOAS_UNMAP's ENOENT (and QEMU does).
      if (e instanceof VfioError && e.errno === 'ENOENT' && !this.proxy.failure) return;
      throw e;
    }
  }

  /** The connection is the device's (it closes it); the container holds nothing of its own. */
  protected doRelease(): void {}

  #closeFds(fds: readonly number[]): void {
    for (const fd of fds) {
      try {
        this.host.close(fd);
      } catch {
        // close(2) frees the descriptor even when it fails.
      }
    }
  }
}
