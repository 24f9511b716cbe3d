// The client's DEVICE_GET_REGION_IO_FDS: ask for a region's sub-regions (again with the argsz
// the server says it needs), keep the ioeventfd ones with their fds and close every other fd.
// QEMU 11.1's client never sends this command; libvfio-user's server answers it.

import { VfioError, type HostKernel, type VfioRegionIoEventfd } from '@vmmkit/core';
import {
  VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, VFIO_USER_IOEVENTFD_FLAG_PIO,
  VFIO_USER_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, VFIO_USER_REGION_IO_FDS_SIZE, VFIO_USER_SUB_REGION_IO_FD_SIZE,
  decodeRegionIoFdsReply, encodeRegionIoFdsRequest, type VfioUserMessage, type VfioUserRegionIoFds,
} from '@vmmkit/core/vfio-user';
import { isServerRefusal, type VfioUserProxy } from './vfio-user-proxy.js';

/** Sub-regions the first request has room for; a server with more says how much it needs. */
const FIRST_ROOM = 8;

/**
 * The ioeventfds of region `index`, the fds the caller's. A server's error reply means none
 * (the command is optional; servers without it refuse it). ioregionfd sub-regions (KVM never
 * merged ioregionfd) and virtio-ccw notifies are dropped with their fds.
 * @throws VfioError EPROTO for a malformed answer (its fds closed), or the connection's failure.
 */
export async function fetchRegionIoEventfds(proxy: VfioUserProxy, host: HostKernel, index: number): Promise<VfioRegionIoEventfd[]> {
  const step = `read the io fds of region ${index}`;
  let room = FIRST_ROOM;
  for (let attempt = 0; attempt < 2; attempt++) {
    let reply: VfioUserMessage;
    try {
      reply = await proxy.request(VFIO_USER_DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(index, room));
    } catch (e) {
      if (isServerRefusal(e)) return [];
      throw e;
    }
    let answer: VfioUserRegionIoFds;
    try {
      answer = decodeRegionIoFdsReply(reply.payload, reply.fds, index);
    } catch (e) {
      closeAll(host, reply.fds);
      throw new VfioError(step, proxy.device, { cause: e, errno: 'EPROTO' });
    }
    if (answer.subRegions) return keepIoeventfds(host, answer, reply.fds);
    if (answer.argsz > proxy.capabilities.maxDataXferSize) {
      throw new VfioError(step, proxy.device, { detail: `the server needs ${answer.argsz} bytes, more than max_data_xfer_size`, errno: 'EPROTO' });
    }
    room = Math.ceil((answer.argsz - VFIO_USER_REGION_IO_FDS_SIZE) / VFIO_USER_SUB_REGION_IO_FD_SIZE);
  }
  throw new VfioError(step, proxy.device, { detail: 'the server asked for more room twice', errno: 'EPROTO' });
}

function keepIoeventfds(host: HostKernel, answer: VfioUserRegionIoFds, fds: readonly number[]): VfioRegionIoEventfd[] {
  const kept: VfioRegionIoEventfd[] = [];
  for (const s of answer.subRegions!) {
    if (s.type !== 'ioeventfd' || s.flags & VFIO_USER_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY) continue;
    kept.push({
      offset: s.offset, size: Number(s.size), pio: (s.flags & VFIO_USER_IOEVENTFD_FLAG_PIO) !== 0, fd: fds[s.fdIndex]!,
      ...(s.flags & VFIO_USER_IOEVENTFD_FLAG_DATAMATCH ? { datamatch: s.datamatch! } : {}),
    });
  }
  const used = new Set(kept.map((k) => k.fd));
  closeAll(host, fds.filter((fd) => !used.has(fd)));
  return kept;
}

function closeAll(host: HostKernel, fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      host.close(fd);
    } catch {
      // close(2) frees the descriptor even when it fails.
    }
  }
}
