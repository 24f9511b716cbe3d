// BAR eventfds (PciFunction.barEventfds): a device the kernel serves has none (its I/O has no
// regionIoEventfds); fetched from an I/O that has them, each BAR's are kept and closed once; a
// fetch that fails part-way closes what it had fetched.

import { describe, expect, it } from 'vitest';
import { VfioError, type VfioDeviceIo, type VfioRegionIoEventfd } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { BarEventfds } from '../src/bar-eventfds.js';
import type { VfioPciDevice } from '../src/index.js';
import { described, MACHINE, NIC, vmmOn } from './helpers.js';

/** An I/O whose regionIoEventfds answers from `answers` (made on `host`), or throws for `failAt`. */
function fakeIo(host: SimHost, answers: Record<number, (Omit<VfioRegionIoEventfd, 'fd'> & { share?: number })[]>, failAt?: number): VfioDeviceIo {
  return {
    regionIoEventfds: async (index: number) => {
      if (index === failAt) throw new VfioError(`read the io fds of region ${index}`, 'fake', { errno: 'EPROTO' });
      const fds: number[] = [];
      return (answers[index] ?? []).map(({ share, ...e }) => {
        const fd = share !== undefined ? fds[share]! : host.eventfd(0, 0o4000);
        fds.push(fd);
        return { ...e, fd };
      });
    },
  } as unknown as VfioDeviceIo;
}

describe('BAR eventfds', () => {
  it('a device the kernel serves offers none', async () => {
    const host = new SimHost(MACHINE);
    const vmm = await vmmOn(host);
    const d = (await vmm.addDevice(described(NIC, 'legacy'))) as VfioPciDevice;
    for (let bar = 0; bar < 6; bar++) expect(d.barEventfds(bar)).toEqual([]);
    await vmm.close();
  });

  it('keeps each BAR\'s eventfds, skips BARs without a size, closes shared fds once', async () => {
    const host = new SimHost();
    const base = host.census();
    const asked: number[] = [];
    const io = fakeIo(host, {
      0: [{ offset: 0x10n, size: 4, pio: false }, { offset: 0x14n, size: 4, pio: false, share: 0 }],
      2: [{ offset: 0n, size: 8, pio: false, datamatch: 5n }],
    });
    const inner = io.regionIoEventfds!.bind(io);
    io.regionIoEventfds = (i) => { asked.push(i); return inner(i); };
    const warnings: string[] = [];
    const e = await BarEventfds.fetch(host, io, 'dev', [0x1000n, 0n, 0x1000n, 0n, 0n, 0n], (w) => warnings.push(w));
    expect(asked).toEqual([0, 2]);
    expect(e.of(0).map((x) => x.offset)).toEqual([0x10n, 0x14n]);
    expect(e.of(0)[0]!.fd).toBe(e.of(0)[1]!.fd);
    expect(e.of(2)).toEqual([{ offset: 0n, size: 8, datamatch: 5n, fd: expect.any(Number) }]);
    expect(e.of(1)).toEqual([]);
    expect(warnings).toEqual([]);
    e.close();
    e.close();
    expect(host.census()).toEqual(base);
  });

  it('a fetch that fails part-way closes what it had and throws the VfioError', async () => {
    const host = new SimHost();
    const base = host.census();
    const io = fakeIo(host, { 0: [{ offset: 0x10n, size: 4, pio: false }] }, 2);
    await expect(BarEventfds.fetch(host, io, 'dev', [0x1000n, 0n, 0x1000n], () => {})).rejects.toMatchObject({ errno: 'EPROTO' });
    expect(host.census()).toEqual(base);
  });

  it('drops a datamatch wider than the write, with a warning and its fd closed', async () => {
    const host = new SimHost();
    const base = host.census();
    const io = fakeIo(host, { 0: [{ offset: 0n, size: 1, pio: false, datamatch: 0x100n }] });
    const warnings: string[] = [];
    const e = await BarEventfds.fetch(host, io, 'dev', [0x1000n], (w) => warnings.push(w));
    expect(e.of(0)).toEqual([]);
    expect(warnings).toEqual(['dev: BAR0 ioeventfd at 0x0 not used: datamatch 0x100 is wider than 1 bytes']);
    expect(host.census()).toEqual(base);
  });
});
