// The vfio-user codecs: every command round-trips, and hostile input is refused with a typed
// error naming the command (sizes, counts, fd counts against the message).

import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CAPABILITIES, VFIO_USER_DEVICE_FEATURE, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DEVICE_GET_IRQ_INFO,
  VFIO_USER_DEVICE_GET_REGION_INFO, VFIO_USER_DMA_READ, VFIO_USER_DMA_WRITE, VFIO_USER_F_NO_REPLY, VFIO_USER_MIG_DATA_WRITE,
  VFIO_USER_REGION_READ, VFIO_USER_REGION_WRITE, VfioUserFramer, decodeDmaAccess, decodeDmaMap,
  decodeDmaReadReply, decodeDmaUnmap, decodeFeature, decodeHeader, decodeLoggingReport, decodeLoggingStart, decodeMigData,
  decodeMigDataRead, decodeMigState, decodeQuery, decodeRegionAccess, decodeRegionInfo, decodeRegionReadReply, decodeSetIrqs,
  decodeVersion, decodeWriteMulti, encodeDmaMap, encodeDmaRead, encodeDmaUnmap, encodeDmaWrite, encodeFeature,
  encodeLoggingReport, encodeLoggingStart, encodeMessage, encodeMigData, encodeMigDataRead, encodeMigState, encodeQuery,
  encodeRegionAccess, encodeRegionInfo, encodeSetIrqs, encodeVersion, encodeWriteMulti, negotiateVersion, replyHeader,
} from '@vmmkit/core/vfio-user';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
} from '@vmmkit/core/uapi';
import { protocolRefusal } from './protocol-refusal.js';

const LIMITS = { maxMessageSize: 1 << 20, maxFds: 16 };
const refused = (fn: () => unknown, match: RegExp, errno = 'EINVAL'): void => {
  expect(protocolRefusal(fn, match).errno).toBe(errno);
};

describe('header', () => {
  it('round-trips and builds replies', () => {
    const bytes = encodeMessage({ msgId: 7, command: 9, flags: VFIO_USER_F_NO_REPLY, error: 0 }, new Uint8Array(5));
    const h = decodeHeader(bytes, LIMITS);
    expect(h).toEqual({ msgId: 7, command: 9, size: 21, flags: 0x10, error: 0 });
    const reply = decodeHeader(encodeMessage(replyHeader(h, 22)), LIMITS);
    expect(reply).toMatchObject({ msgId: 7, command: 9, flags: 0x21, error: 22, size: 16 });
  });

  it('refuses sizes below the header and above the limit, unknown flags and types', () => {
    const raw = (size: number, flags = 0): Uint8Array => {
      const b = new Uint8Array(16);
      new DataView(b.buffer).setUint32(4, size, true);
      new DataView(b.buffer).setUint32(8, flags, true);
      return b;
    };
    refused(() => decodeHeader(raw(15), LIMITS), /smaller than the header/);
    refused(() => decodeHeader(raw(LIMITS.maxMessageSize + 1), LIMITS), /exceeds the limit/, 'E2BIG');
    refused(() => decodeHeader(raw(16, 0x40), LIMITS), /unknown flag bits/);
    refused(() => decodeHeader(raw(16, 2), LIMITS), /neither command nor reply/);
    refused(() => decodeHeader(raw(16, 0x20), LIMITS), /command carries the error flag/);
    refused(() => decodeHeader(raw(16, 0x11), LIMITS), /reply carries the no-reply flag/);
    refused(() => decodeHeader(new Uint8Array(8), LIMITS), /shorter than a header/);
  });
});

describe('framer', () => {
  it('reassembles messages split anywhere and gives fds to the message holding the chunk\'s last byte', () => {
    const a = encodeMessage({ msgId: 1, command: 2, flags: 0, error: 0 }, new Uint8Array(32));
    const b = encodeMessage({ msgId: 2, command: 2, flags: 0, error: 0 }, new Uint8Array(32));
    const stream = new Uint8Array([...a, ...b]);
    const f = new VfioUserFramer(LIMITS);
    expect(f.push(stream.subarray(0, 10), [])).toEqual([]);
    // This chunk ends inside b, and b's fd came with it (as Linux delivers it).
    const first = f.push(stream.subarray(10, 60), [42]);
    expect(first.map((m) => [m.header.msgId, m.fds])).toEqual([[1, []]]);
    expect(f.pendingFds).toEqual([42]);
    const second = f.push(stream.subarray(60), []);
    expect(second.map((m) => [m.header.msgId, m.fds])).toEqual([[2, [42]]]);
    expect(f.pendingFds).toEqual([]);
  });

  it('cuts whole messages from a chunk with nothing held back, and keeps its tail with the fds for the next', () => {
    const a = encodeMessage({ msgId: 1, command: 2, flags: 0, error: 0 }, new Uint8Array(8).fill(1));
    const b = encodeMessage({ msgId: 2, command: 2, flags: 0, error: 0 }, new Uint8Array(8).fill(2));
    const c = encodeMessage({ msgId: 3, command: 2, flags: 0, error: 0 }, new Uint8Array(8).fill(3));
    const stream = new Uint8Array([...a, ...b, ...c]);
    const f = new VfioUserFramer(LIMITS);
    const first = f.push(stream.subarray(0, a.byteLength + 5), [42]);
    expect(first.map((m) => [m.header.msgId, m.fds, [...m.payload]])).toEqual([[1, [], [1, 1, 1, 1, 1, 1, 1, 1]]]);
    expect(f.pendingFds).toEqual([42]);
    const rest = f.push(stream.subarray(a.byteLength + 5), [43]);
    expect(rest.map((m) => [m.header.msgId, m.fds, m.payload[0]])).toEqual([[2, [42], 2], [3, [43], 3]]);
    expect(f.pendingFds).toEqual([]);
  });

  it('gives payloads the receiver owns: the chunk buffer reused and later messages leave them alone', () => {
    const f = new VfioUserFramer(LIMITS);
    // One receive buffer reused for every chunk, as the socket stream does.
    const chunk = new Uint8Array(64 * 1024);
    const kept: { id: number; payload: Uint8Array }[] = [];
    const sizes = [0, 1, 7, 20, 4096, 4097, 9000, 3];
    let id = 0;
    // Enough messages to use several payload slabs, delivered whole, several to a chunk and split.
    for (let round = 0; round < 60; round++) {
      const stream = new Uint8Array(sizes.flatMap((n) => [...encodeMessage({ msgId: id++, command: 2, flags: 0, error: 0 }, new Uint8Array(n).fill(id & 0xff))]));
      const cut = round % 3 === 0 ? stream.byteLength : (round * 37) % stream.byteLength;
      for (const [from, to] of [[0, cut], [cut, stream.byteLength]] as const) {
        if (from === to) continue;
        chunk.set(stream.subarray(from, to));
        for (const m of f.push(chunk.subarray(0, to - from), [])) kept.push({ id: m.header.msgId, payload: m.payload });
        chunk.fill(0xee);
      }
    }
    expect(kept).toHaveLength(60 * sizes.length);
    kept.forEach(({ id: msgId, payload }, i) => {
      expect(payload.byteLength).toBe(sizes[i % sizes.length]);
      expect(payload.every((b) => b === ((msgId + 1) & 0xff))).toBe(true);
    });
  });

  it('refuses more fds than allowed and keeps them for the owner to close', () => {
    const f = new VfioUserFramer({ maxMessageSize: 4096, maxFds: 2 });
    refused(() => f.push(encodeMessage({ msgId: 1, command: 2, flags: 0, error: 0 }), [5, 6, 7]), /3 fds came with a message/);
    expect(f.takePendingFds()).toEqual([5, 6, 7]);
  });
});

describe('VERSION', () => {
  it('round-trips the capabilities and negotiates the smaller of each', () => {
    const client = { major: 0, minor: 0, capabilities: {
      maxMsgFds: 16, maxDataXferSize: 1 << 20, maxDmaMaps: 65535, pgsizes: 4096n, writeMultiple: true, twinSocket: false,
      migration: { pgsize: 4096n, maxBitmapSize: 256n << 20n },
    } };
    const decoded = decodeVersion(encodeVersion(client), []);
    expect(decoded).toEqual(client);
    const server = { major: 0, minor: 3, capabilities: { ...DEFAULT_CAPABILITIES, maxMsgFds: 8, maxDataXferSize: 65536, writeMultiple: true } };
    const agreed = negotiateVersion(decoded, server)!;
    expect(agreed.minor).toBe(0);
    expect(agreed.capabilities).toMatchObject({ maxMsgFds: 8, maxDataXferSize: 65536, writeMultiple: true });
    expect(negotiateVersion({ ...client, major: 1 }, server)).toBeUndefined();
  });

  it('takes QEMU\'s JSON as it sends it, and defaults for absent fields', () => {
    const json = '{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"migration":{"pgsize":4096,"max_bitmap_size":268435456},"write_multiple":true}}';
    const bytes = new Uint8Array([0, 0, 0, 0, ...new TextEncoder().encode(json), 0]);
    expect(decodeVersion(bytes, []).capabilities.maxMsgFds).toBe(16);
    expect(decodeVersion(new Uint8Array(4), []).capabilities).toEqual(DEFAULT_CAPABILITIES);
  });

  it('refuses malformed capabilities', () => {
    const v = (json: string): Uint8Array => new Uint8Array([0, 0, 0, 0, ...new TextEncoder().encode(json), 0]);
    refused(() => decodeVersion(v('{'), []), /not UTF-8 JSON/);
    refused(() => decodeVersion(v('[]'), []), /not a JSON object/);
    refused(() => decodeVersion(v('{"capabilities":{"max_msg_fds":-1}}'), []), /max_msg_fds/);
    refused(() => decodeVersion(v('{"capabilities":{"max_msg_fds":1e9}}'), []), /max_msg_fds/);
    refused(() => decodeVersion(v('{"capabilities":{"write_multiple":1}}'), []), /write_multiple/);
    refused(() => decodeVersion(new Uint8Array([0, 0, 0, 0, 123, 0, 65]), []), /follow the NUL/);
    refused(() => decodeVersion(new Uint8Array(2), []), /too short/);
    refused(() => decodeVersion(new Uint8Array(4), [3]), /1 file descriptors/);
    refused(() => decodeVersion(new Uint8Array(5000), []), /exceeds/, 'E2BIG');
  });
});

describe('DMA', () => {
  it('round-trips map, unmap and the message path', () => {
    const map = { flags: 3, offset: 0x1000n, address: 0x10_0000n, size: 0x20_0000n };
    expect(decodeDmaMap(encodeDmaMap(map), [9])).toEqual({ argsz: 32, ...map });
    expect(decodeDmaUnmap(encodeDmaUnmap({ flags: 0, address: 1n << 20n, size: 4096n }), [])).toMatchObject({ address: 1n << 20n, size: 4096n });
    expect(decodeDmaAccess(VFIO_USER_DMA_READ, encodeDmaRead(0x2000n, 64), [], 4096)).toEqual({ address: 0x2000n, count: 64n });
    const w = decodeDmaAccess(VFIO_USER_DMA_WRITE, encodeDmaWrite(0x2000n, new Uint8Array([1, 2, 3])), [], 4096);
    expect([...w.data!]).toEqual([1, 2, 3]);
    expect([...decodeDmaReadReply(encodeDmaWrite(0x2000n, new Uint8Array([4, 5])), 2)]).toEqual([4, 5]);
  });

  it('refuses bad sizes, fd counts and windows', () => {
    const good = encodeDmaMap({ flags: 3, offset: 0n, address: 0n, size: 4096n });
    refused(() => decodeDmaMap(good.subarray(0, 24), []), /24 bytes, a DMA map takes 32/);
    refused(() => decodeDmaMap(good, [1, 2]), /2 file descriptors/);
    refused(() => decodeDmaMap(encodeDmaMap({ flags: 4, offset: 0n, address: 0n, size: 4096n }), []), /unknown flags/);
    refused(() => decodeDmaMap(encodeDmaMap({ flags: 1, offset: 0n, address: 0n, size: 0n }), []), /empty/);
    refused(() => decodeDmaMap(encodeDmaMap({ flags: 1, offset: 0n, address: 0xffff_ffff_ffff_f000n, size: 0x2000n }), []), /wraps/);
    refused(() => decodeDmaMap(encodeDmaMap({ flags: 1, offset: 4096n, address: 0n, size: 4096n }), []), /without a file has a file offset/);
    const badArgsz = good.slice();
    badArgsz[0] = 16;
    refused(() => decodeDmaMap(badArgsz, []), /argsz 16/);
    refused(() => decodeDmaUnmap(encodeDmaUnmap({ flags: 0, address: 0n, size: 4096n }), [4]), /1 file descriptors/);
    refused(() => decodeDmaAccess(VFIO_USER_DMA_READ, encodeDmaRead(0n, 8192), [], 4096), /exceeds max_data_xfer_size/, 'E2BIG');
    const lying = encodeDmaWrite(0n, new Uint8Array(8));
    new DataView(lying.buffer).setBigUint64(8, 16n, true);
    refused(() => decodeDmaAccess(VFIO_USER_DMA_WRITE, lying, [], 4096), /a write of 16 bytes/);
  });
});

describe('device queries', () => {
  it('round-trip region info with the sparse-mmap capability, and drop it when argsz is short', () => {
    const info = { index: 2, flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP, size: 0x4000n, mmapOffset: 0x10000n,
      sparse: [{ offset: 0n, size: 0x1000n }, { offset: 0x2000n, size: 0x2000n }] };
    const full = decodeRegionInfo(encodeRegionInfo(info, 1024));
    expect(full).toMatchObject({ argsz: 80, index: 2, size: 0x4000n, mmapOffset: 0x10000n, sparse: info.sparse });
    const short = decodeRegionInfo(encodeRegionInfo(info, 32));
    expect(short.argsz).toBe(80);
    expect(short.sparse).toBeUndefined();
    expect(short.flags & VFIO_REGION_INFO_FLAG_CAPS).toBe(0);
    expect(full.flags & VFIO_REGION_INFO_FLAG_CAPS).toBe(VFIO_REGION_INFO_FLAG_CAPS);
    expect(decodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 7), [])).toEqual({ argsz: 32, index: 7 });
  });

  it('refuses a looping capability chain and queries of the wrong shape', () => {
    const bytes = encodeRegionInfo({ index: 0, flags: 0, size: 1n, mmapOffset: 0n, sparse: [{ offset: 0n, size: 1n }] }, 1024);
    new DataView(bytes.buffer).setUint32(36, 32, true); // next points at itself
    refused(() => decodeRegionInfo(bytes), /goes backwards/);
    refused(() => decodeQuery(VFIO_USER_DEVICE_GET_INFO, encodeQuery(VFIO_USER_DEVICE_GET_INFO, 0, 8), []), /argsz 8/);
    refused(() => decodeQuery(VFIO_USER_DEVICE_GET_IRQ_INFO, new Uint8Array(12), []), /12 bytes/);
    refused(() => decodeQuery(VFIO_USER_DEVICE_GET_IRQ_INFO, encodeQuery(VFIO_USER_DEVICE_GET_IRQ_INFO, 0), [5]), /1 file descriptors/);
  });

  it('round-trips SET_IRQS and refuses inconsistent ones', () => {
    const ev = { flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 2, start: 0, count: 3 };
    expect(decodeSetIrqs(encodeSetIrqs(ev), [7, 8, 9])).toMatchObject(ev);
    expect(decodeSetIrqs(encodeSetIrqs(ev), [])).toMatchObject(ev);
    const bools = decodeSetIrqs(encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, index: 0, start: 0, count: 2, bools: new Uint8Array([1, 0]) }), []);
    expect([...bools.bools!]).toEqual([1, 0]);
    refused(() => decodeSetIrqs(encodeSetIrqs(ev), [7]), /DATA_EVENTFD takes 3/);
    refused(() => decodeSetIrqs(encodeSetIrqs({ ...ev, flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER }), []), /exactly one DATA/);
    refused(() => decodeSetIrqs(encodeSetIrqs({ ...ev, flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER }), [3, 4, 5]), /DATA_NONE carries none/);
    refused(() => decodeSetIrqs(encodeSetIrqs({ ...ev, start: 0xffff_ffff, count: 2 }), []), /overflows/);
    const lie = encodeSetIrqs(ev);
    lie[0] = 40;
    refused(() => decodeSetIrqs(lie, []), /argsz 40/);
  });
});

describe('region access', () => {
  it('round-trips read, write, read reply and write-multi', () => {
    const w = decodeRegionAccess(VFIO_USER_REGION_WRITE, encodeRegionAccess({ offset: 8n, region: 0, count: 4, data: new Uint8Array([1, 2, 3, 4]) }), [], 4096);
    expect(w).toMatchObject({ offset: 8n, region: 0, count: 4 });
    expect(decodeRegionAccess(VFIO_USER_REGION_READ, encodeRegionAccess({ offset: 0n, region: 7, count: 4 }), [], 4096)).toEqual({ offset: 0n, region: 7, count: 4 });
    expect([...decodeRegionReadReply(encodeRegionAccess({ offset: 0n, region: 7, count: 2, data: new Uint8Array([9, 8]) }), 2)]).toEqual([9, 8]);
    const multi = decodeWriteMulti(encodeWriteMulti([{ offset: 0n, region: 0, count: 4, data: new Uint8Array([1, 2, 3, 4]) }, { offset: 4n, region: 2, count: 1, data: new Uint8Array([5]) }]), []);
    expect(multi.map((m) => [m.region, m.count, [...m.data!]])).toEqual([[0, 4, [1, 2, 3, 4]], [2, 1, [5]]]);
  });

  it('refuses counts beyond the data, the limit, or 8 bytes in write-multi', () => {
    refused(() => decodeRegionAccess(VFIO_USER_REGION_READ, encodeRegionAccess({ offset: 0n, region: 0, count: 8192 }), [], 4096), /exceeds/, 'E2BIG');
    const short = encodeRegionAccess({ offset: 0n, region: 0, count: 4, data: new Uint8Array(4) }).subarray(0, 18);
    refused(() => decodeRegionAccess(VFIO_USER_REGION_WRITE, short, [], 4096), /a write of 4 bytes/);
    const nine = encodeWriteMulti([{ offset: 0n, region: 0, count: 4, data: new Uint8Array(4) }]);
    new DataView(nine.buffer).setUint32(20, 9, true);
    refused(() => decodeWriteMulti(nine, []), /count 9/);
    const many = new Uint8Array(8);
    new DataView(many.buffer).setBigUint64(0, 1n << 40n, true);
    refused(() => decodeWriteMulti(many, []), /wr_cnt/);
  });
});

describe('features and migration data', () => {
  it('round-trips DMA logging start and report, device state and migration data', () => {
    const start = { pageSize: 4096n, ranges: [{ iova: 0n, length: 1n << 20n }, { iova: 1n << 32n, length: 8192n }] };
    const f = decodeFeature(encodeFeature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, encodeLoggingStart(start)), []);
    expect(f.feature).toBe(VFIO_DEVICE_FEATURE_DMA_LOGGING_START);
    expect(decodeLoggingStart(f.data)).toEqual(start);
    const rep = { iova: 0n, length: 1n << 20n, pageSize: 4096n };
    expect(decodeLoggingReport(encodeLoggingReport(rep), 8 + 24 + 32)).toEqual(rep);
    expect(decodeMigState(encodeMigState(3))).toBe(3);
    expect(decodeMigDataRead(encodeMigDataRead(100), [], 4096)).toBe(100);
    expect([...decodeMigData(VFIO_USER_MIG_DATA_WRITE, encodeMigData(new Uint8Array([1, 2])), [], 4096)]).toEqual([1, 2]);
  });

  it('refuses bad feature flags, range counts, page sizes and report sizes', () => {
    refused(() => decodeFeature(encodeFeature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | 2), []), /GET and SET together/);
    refused(() => decodeFeature(encodeFeature(2), []), /none of GET, SET and PROBE/);
    refused(() => decodeFeature(encodeFeature(1 << 20), []), /unknown flag bits/);
    const start = encodeLoggingStart({ pageSize: 4096n, ranges: [{ iova: 0n, length: 4096n }] });
    new DataView(start.buffer).setUint32(8, 5, true);
    refused(() => decodeLoggingStart(start), /5 ranges/);
    new DataView(start.buffer).setUint32(8, 1 << 20, true);
    refused(() => decodeLoggingStart(start), /more than/, 'E2BIG');
    refused(() => decodeLoggingReport(encodeLoggingReport({ iova: 0n, length: 4096n, pageSize: 3000n }), 1024), /power of two/);
    refused(() => decodeLoggingReport(encodeLoggingReport({ iova: 0n, length: 1n << 30n, pageSize: 4096n }), 64), /argsz 64/, 'E2BIG');
    refused(() => decodeMigDataRead(encodeMigDataRead(1 << 21), [], 1 << 20), /exceeds/, 'E2BIG');
    const lying = encodeMigData(new Uint8Array(4));
    new DataView(lying.buffer).setUint32(4, 40, true);
    refused(() => decodeMigData(VFIO_USER_MIG_DATA_WRITE, lying, [], 4096), /40 bytes of migration data/);
    refused(() => decodeFeature(encodeFeature(VFIO_DEVICE_FEATURE_GET | 1), [3]), /1 file descriptors/);
    expect(VFIO_USER_DEVICE_FEATURE).toBe(16);
  });
});
