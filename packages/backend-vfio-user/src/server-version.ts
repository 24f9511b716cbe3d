// The client's check of the server's VERSION reply (QEMU's vfio_user_validate_version): the
// same major, a minor no higher than the client's, and capabilities the client can live with.

import { VFIO_USER_MAJOR, VFIO_USER_MINOR, type VfioUserCapabilities, type VfioUserVersion } from '@vmmkit/core/vfio-user';
import { ConfigError } from '@vmmkit/core';

/**
 * The capabilities both sides hold to after the server's reply: what the server accepts, cut
 * down to what the client offered. Throws (the caller names the device) when the reply is one
 * the client cannot speak with.
 */
export function checkServerVersion(reply: VfioUserVersion, offer: VfioUserCapabilities): VfioUserCapabilities {
  if (reply.major !== VFIO_USER_MAJOR) throw refusal(`the server speaks major version ${reply.major}, the client ${VFIO_USER_MAJOR}`);
  if (reply.minor > VFIO_USER_MINOR) throw refusal(`the server answered minor version ${reply.minor}, above the client's ${VFIO_USER_MINOR}`);
  const s = reply.capabilities;
  if (s.maxMsgFds < 1) throw refusal('the server accepts no file descriptors (max_msg_fds 0): DMA maps could not hand it guest memory');
  if (s.maxDataXferSize < 8) throw refusal(`max_data_xfer_size ${s.maxDataXferSize} cannot carry one register access`);
  const pgsizes = s.pgsizes & offer.pgsizes;
  if (pgsizes === 0n) throw refusal(`no DMA page size in common (server 0x${s.pgsizes.toString(16)}, client 0x${offer.pgsizes.toString(16)})`);
  if (s.maxDmaMaps < 1) throw refusal('the server accepts no DMA maps (max_dma_maps 0)');
  if (s.migration && offer.migration) checkMigration(s.migration, offer.migration);
  return {
    maxMsgFds: Math.min(s.maxMsgFds, offer.maxMsgFds),
    maxDataXferSize: Math.min(s.maxDataXferSize, offer.maxDataXferSize),
    maxDmaMaps: Math.min(s.maxDmaMaps, offer.maxDmaMaps),
    pgsizes,
    ...(s.migration && offer.migration ? { migration: s.migration } : {}),
    writeMultiple: s.writeMultiple && offer.writeMultiple,
    twinSocket: false,
  };
}

/**
 * The server's migration capability must be one the client can log dirty pages with: a
 * power-of-two page size, and a max_bitmap_size no larger than offered (QEMU refuses more) that
 * holds at least one u64 of bitmap.
 */
function checkMigration(s: { pgsize: bigint; maxBitmapSize: bigint }, offer: { maxBitmapSize: bigint }): void {
  if (s.pgsize === 0n || (s.pgsize & (s.pgsize - 1n)) !== 0n) throw refusal(`migration pgsize ${s.pgsize} is not a power of two`);
  if (s.maxBitmapSize > offer.maxBitmapSize) throw refusal(`migration max_bitmap_size ${s.maxBitmapSize} is above the client's ${offer.maxBitmapSize}`);
  if (s.maxBitmapSize < 8n) throw refusal(`migration max_bitmap_size ${s.maxBitmapSize} cannot hold one u64 of a dirty bitmap`);
}

function refusal(reason: string): ConfigError {
  return new ConfigError(`vfio-user VERSION: ${reason}`, 'socket');
}
