// DEVICE_GET_REGION_IO_FDS codecs: the request and reply round-trip (ioeventfd with and without
// datamatch, ioregionfd, shared fds, a reply too large for the client's argsz), and hostile
// requests and replies are refused with a VfioUserProtocolError naming what was wrong.

import { describe, expect, it } from 'vitest';
import {
  VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, VFIO_USER_IOEVENTFD_FLAG_PIO, VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES,
  decodeRegionIoFdsReply, decodeRegionIoFdsRequest, encodeRegionIoFdsReply,
  encodeRegionIoFdsRequest, type VfioUserIoFdSubRegion,
} from '@vmmkit/core/vfio-user';
import { protocolRefusal } from './protocol-refusal.js';

const refused = (fn: () => unknown, match: RegExp): void => {
  expect(protocolRefusal(fn, match).command).toBe('VFIO_USER_DEVICE_GET_REGION_IO_FDS');
};

const doorbell: VfioUserIoFdSubRegion = { type: 'ioeventfd', offset: 0x4000n, size: 4n, fdIndex: 0, flags: 0 };
const matched: VfioUserIoFdSubRegion = {
  type: 'ioeventfd', offset: 0x10n, size: 2n, fdIndex: 1, flags: VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, datamatch: 0xbeefn,
};
const region: VfioUserIoFdSubRegion = {
  type: 'ioregionfd', offset: 0x100n, size: 0n, fdIndex: 0, flags: VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES, userData: 42n,
};

/** A reply payload with one field changed. */
function patched(subRegions: readonly VfioUserIoFdSubRegion[], at: number, value: number, width: 4 | 8 = 4): Uint8Array {
  const { payload } = encodeRegionIoFdsReply(2, subRegions, 4096);
  const dv = new DataView(payload.buffer);
  if (width === 4) dv.setUint32(at, value, true);
  else dv.setBigUint64(at, BigInt(value), true);
  return payload;
}

describe('GET_REGION_IO_FDS request', () => {
  it('round-trips with room for sub-regions', () => {
    expect(decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(2, 3), [])).toEqual({ argsz: 16 + 3 * 40, index: 2 });
    expect(decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(7), [])).toEqual({ argsz: 16, index: 7 });
  });

  it('refuses a wrong size, fds, a small argsz, and nonzero flags or count', () => {
    refused(() => decodeRegionIoFdsRequest(new Uint8Array(20), []), /payload of 20 bytes, the request structure takes 16/);
    refused(() => decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(2), [5]), /1 file descriptors came with the message/);
    const at = (offset: number, value: number): Uint8Array => {
      const b = encodeRegionIoFdsRequest(2);
      new DataView(b.buffer).setUint32(offset, value, true);
      return b;
    };
    refused(() => decodeRegionIoFdsRequest(at(0, 15), []), /argsz 15 is smaller/);
    refused(() => decodeRegionIoFdsRequest(at(4, 1), []), /flags 0x1 must be zero/);
    refused(() => decodeRegionIoFdsRequest(at(12, 3), []), /count 3 must be zero/);
  });
});

describe('GET_REGION_IO_FDS reply', () => {
  it('round-trips ioeventfds with and without datamatch, an ioregionfd, and a shared fd', () => {
    const subs = [doorbell, matched, region];
    const { payload, complete } = encodeRegionIoFdsReply(2, subs, 16 + 3 * 40);
    expect(complete).toBe(true);
    expect(payload.byteLength).toBe(136);
    expect(decodeRegionIoFdsReply(payload, [10, 11], 2)).toEqual({ argsz: 136, index: 2, count: 3, subRegions: subs });
  });

  it('a region without sub-regions answers count 0 and no fds', () => {
    const { payload, complete } = encodeRegionIoFdsReply(0, [], 16);
    expect(complete).toBe(true);
    expect(decodeRegionIoFdsReply(payload, [], 0)).toEqual({ argsz: 16, index: 0, count: 0, subRegions: [] });
    refused(() => decodeRegionIoFdsReply(payload, [3], 0), /without sub-regions carries none/);
  });

  it('an argsz too small gets the fixed part: the count and the argsz needed, no sub-regions, no fds', () => {
    const { payload, complete } = encodeRegionIoFdsReply(2, [doorbell, matched], 16 + 40);
    expect(complete).toBe(false);
    expect(payload.byteLength).toBe(16);
    expect(decodeRegionIoFdsReply(payload, [], 2)).toEqual({ argsz: 96, index: 2, count: 2 });
    refused(() => decodeRegionIoFdsReply(payload, [4], 2), /without its sub-regions carries none/);
  });

  it('reads entries at the stride argsz and count give (entries larger than 40 bytes)', () => {
    const { payload } = encodeRegionIoFdsReply(2, [doorbell, matched], 4096);
    const wide = new Uint8Array(16 + 2 * 48);
    wide.set(payload.subarray(0, 16));
    wide.set(payload.subarray(16, 56), 16);
    wide.set(payload.subarray(56, 96), 64);
    new DataView(wide.buffer).setUint32(0, wide.byteLength, true);
    expect(decodeRegionIoFdsReply(wide, [1, 2], 2).subRegions).toEqual([doorbell, matched]);
  });

  it('refuses a short payload, flags, another region, an argsz that does not fit the count or the payload', () => {
    refused(() => decodeRegionIoFdsReply(new Uint8Array(12), [], 2), /too short for the reply structure/);
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 4, 1), [1], 2), /reply flags 0x1 must be zero/);
    refused(() => decodeRegionIoFdsReply(encodeRegionIoFdsReply(3, [doorbell], 4096).payload, [1], 2), /for region 3, region 2 was asked/);
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 12, 2), [1], 2), /argsz 56 is too small for 2 sub-regions/);
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 0, 60), [1], 2), /payload of 56 bytes, argsz 60 takes 60/);
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 12, 0xffff_ffff), [1], 2), /too small for 4294967295 sub-regions/);
    const odd = new Uint8Array(16 + 81);
    odd.set(encodeRegionIoFdsReply(2, [doorbell, doorbell], 4096).payload);
    new DataView(odd.buffer).setUint32(0, odd.byteLength, true);
    refused(() => decodeRegionIoFdsReply(odd, [1], 2), /not 16 plus 2 equal sub-regions/);
  });

  it('refuses fd indexes beyond the fds, missing, surplus and unused fds', () => {
    refused(() => decodeRegionIoFdsReply(encodeRegionIoFdsReply(2, [matched], 4096).payload, [1], 2), /fd_index 1 is beyond the 1 file descriptors/);
    refused(() => decodeRegionIoFdsReply(encodeRegionIoFdsReply(2, [doorbell], 4096).payload, [], 2), /0 file descriptors came with the message, 1 sub-regions use between 1 and 1/);
    refused(() => decodeRegionIoFdsReply(encodeRegionIoFdsReply(2, [doorbell], 4096).payload, [1, 2], 2), /2 file descriptors came/);
    refused(() => decodeRegionIoFdsReply(encodeRegionIoFdsReply(2, [doorbell, doorbell], 4096).payload, [1, 2], 2), /1 of the 2 file descriptors belong to no sub-region/);
  });

  it('refuses unknown types and flags, widths KVM does not take, datamatch without a width, ranges that wrap', () => {
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 16 + 20, 2), [1], 2), /sub-region 0: unknown type 2/);
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 16 + 24, 0x10), [1], 2), /unknown ioeventfd flags 0x10/);
    refused(() => decodeRegionIoFdsReply(patched([region], 16 + 24, 0x6), [1], 2), /unknown ioregionfd flags 0x6/);
    refused(() => decodeRegionIoFdsReply(patched([doorbell], 16 + 8, 3, 8), [1], 2), /an ioeventfd of 3 bytes/);
    refused(() => decodeRegionIoFdsReply(patched([{ ...doorbell, size: 0n }], 16 + 24, VFIO_USER_IOEVENTFD_FLAG_DATAMATCH), [1], 2), /datamatch needs an access width/);
    refused(() => decodeRegionIoFdsReply(patched([{ ...region, flags: 0 }], 16 + 8, 0, 8), [1], 2), /size 0 must post its writes/);
    const wraps = encodeRegionIoFdsReply(2, [{ ...doorbell, offset: 0xffff_ffff_ffff_fffen }], 4096).payload;
    refused(() => decodeRegionIoFdsReply(wraps, [1], 2), /wraps/);
  });

  it('keeps the PIO flag and drops datamatch values the flag does not ask for', () => {
    const pio = { ...doorbell, flags: VFIO_USER_IOEVENTFD_FLAG_PIO };
    const payload = encodeRegionIoFdsReply(2, [pio], 4096).payload;
    new DataView(payload.buffer).setBigUint64(16 + 32, 7n, true);
    expect(decodeRegionIoFdsReply(payload, [1], 2).subRegions).toEqual([pio]);
  });
});
