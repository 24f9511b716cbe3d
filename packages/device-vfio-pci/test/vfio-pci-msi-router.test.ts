// vfio-pci with an MSI router (PciFunction.useMsiRouter), on SimHost with a router that records
// what it is asked (the KVM router itself is tested on real KVM in accel-kvm): enabled, unmasked
// MSI-X and MSI vectors are connected with their eventfds and the programmed messages, and the
// VMM stops hearing them; a reprogrammed vector is updated, a masked one (or a masked function)
// disconnected and heard by the VMM again so its pending bit works; disable, withdrawal and
// unrealize disconnect exactly the routes made; a refused connect is warned, and the vector is
// delivered by the VMM as before.

import { describe, expect, it } from 'vitest';
import { ConfigError, type MsiMessage, type MsiRoute, type MsiRouter, type VmmEvents } from '@vmmkit/core';
import { EDU_IRQ_RAISE, NIC_CTRL, NIC_IRQ_BATCH, NIC_MSIX_PBA, NIC_MSIX_TABLE, NIC_RATE_PPS, NIC_RX_RING_BASE, NIC_RX_RING_SIZE, SimHost } from '@vmmkit/sim';
import type { VfioPciDevice, VfioPciInterrupt } from '../src/index.js';
import { described, EDU, findCap, MACHINE, NIC, tick, vmmOn } from './helpers.js';

interface Made { readonly eventfd: number; messages: MsiMessage[]; disconnects: number }

/** A router that records every route it makes; `refuse` makes connect throw for those messages' data. */
class RecordingRouter implements MsiRouter {
  readonly made: Made[] = [];
  readonly refuse = new Set<number>();

  connect(eventfd: number, message: MsiMessage): MsiRoute {
    if (this.refuse.has(message.data)) throw new ConfigError(`no route for data 0x${message.data.toString(16)}`);
    const made: Made = { eventfd, messages: [message], disconnects: 0 };
    this.made.push(made);
    return {
      update: (m) => void made.messages.push(m),
      disconnect: () => void made.disconnects++,
    };
  }

  /** The routes not disconnected, as [eventfd, last message data]. */
  get live(): [number, number][] {
    return this.made.filter((m) => m.disconnects === 0).map((m) => [m.eventfd, m.messages.at(-1)!.data]);
  }
}

const entry = (v: number): number => NIC_MSIX_TABLE + 16 * v;

async function nicWithMsix() {
  const host = new SimHost(MACHINE);
  const before = host.census();
  const vmm = await vmmOn(host);
  const warnings: VmmEvents['vfio:warning'][0][] = [];
  vmm.events.on('vfio:warning', (w) => warnings.push(w));
  const d = (await vmm.addDevice(described(NIC, 'legacy'))) as VfioPciDevice;
  const heard: VfioPciInterrupt[] = [];
  d.on('interrupt', (e) => heard.push(e));
  await d.configWrite(0x04, 2, (await d.configRead(0x04, 2)) | 0x6);
  const msix = await findCap(d, 0x11);
  // Vectors 0 and 1 programmed; 0 unmasked, 1 left masked.
  for (const v of [0, 1]) {
    await d.barWrite(0, entry(v), 8, 0xfee0_0000n);
    await d.barWrite(0, entry(v) + 8, 4, BigInt(0x40 + v));
  }
  await d.barWrite(0, entry(0) + 12, 4, 0n);
  const enable = (flags: number) => d.configWrite(msix + 2, 2, flags);
  /** The nic receiving, an interrupt on vector 0 every 2 packets. */
  const traffic = async () => {
    await d.barWrite(0, NIC_RX_RING_BASE, 4, 0x10_0000n);
    await d.barWrite(0, NIC_RX_RING_SIZE, 4, 64n);
    await d.barWrite(0, NIC_RATE_PPS, 4, 1000n);
    await d.barWrite(0, NIC_IRQ_BATCH, 4, 2n);
    await d.barWrite(0, NIC_CTRL, 4, 3n);
  };
  const done = async () => {
    await vmm.close();
    await tick();
    expect(host.census()).toEqual(before);
  };
  return { host, vmm, d, heard, warnings, enable, traffic, done };
}

describe('vfio-pci routes its MSI and MSI-X vectors through an MSI router', () => {
  it('MSI-X: connects what is enabled and unmasked, updates, disconnects on mask, function mask and disable', async () => {
    const { host, d, heard, warnings, enable, traffic, done } = await nicWithMsix();
    const router = new RecordingRouter();
    d.useMsiRouter(router);
    expect(router.made).toEqual([]); // MSI-X is off: nothing to route
    await enable(0x8000);
    expect(d.routedVectors).toEqual([0]);
    expect(router.live).toEqual([[expect.any(Number), 0x40]]);
    const fd0 = router.made[0]!.eventfd;

    // Routed: the nic's signals are not the VMM's to hear.
    await traffic();
    host.advance(10);
    await tick();
    expect(heard).toEqual([]);

    // Reprogrammed: the same route carries the new message.
    await d.barWrite(0, entry(0) + 8, 4, 0x48n);
    expect(router.made[0]!.messages.map((m) => m.data)).toEqual([0x40, 0x48]);
    await d.barWrite(0, entry(0) + 8, 4, 0x48n); // the same message: no update
    expect(router.made[0]!.messages.length).toBe(2);

    // Vector 1 unmasked: connected on its own eventfd.
    await d.barWrite(0, entry(1) + 12, 4, 0n);
    expect(d.routedVectors).toEqual([0, 1]);
    expect(router.live.map(([, data]) => data)).toEqual([0x48, 0x41]);
    expect(router.made[1]!.eventfd).not.toBe(fd0);

    // Vector 0 masked: disconnected; the VMM hears it again, as a pending bit.
    await d.barWrite(0, entry(0) + 12, 4, 1n);
    expect(router.made[0]!.disconnects).toBe(1);
    expect(d.routedVectors).toEqual([1]);
    host.advance(10);
    await tick();
    expect(heard).toEqual([]);
    expect((await d.barRead(0, NIC_MSIX_PBA, 8)) & 1n).toBe(1n);
    // Unmasked: the pending interrupt is delivered by the VMM, then the vector is routed anew.
    await d.barWrite(0, entry(0) + 12, 4, 0n);
    expect(heard.map((e) => [e.vector, e.message?.data])).toEqual([[0, 0x48]]);
    expect(router.live.map(([, data]) => data)).toEqual([0x41, 0x48]);

    // The function masked: everything disconnected; unmasked: both connected again.
    await enable(0xc000);
    expect(d.routedVectors).toEqual([]);
    expect(router.live).toEqual([]);
    await enable(0x8000);
    expect(d.routedVectors).toEqual([0, 1]);

    // Disabled: exactly the routes made are disconnected, once each.
    await d.barWrite(0, NIC_CTRL, 4, 0n);
    await enable(0);
    expect(d.interruptMode).not.toBe('msix');
    expect(router.made.map((m) => m.disconnects)).toEqual(router.made.map(() => 1));
    expect(router.made.length).toBe(5); // 0, 1, 0 after its unmask, 0 and 1 after the function unmask
    expect(warnings).toEqual([]);
    await done();
  });

  it('withdrawal and unrealize disconnect the routes made; signals counted meanwhile reach the VMM', async () => {
    const { host, d, heard, enable, traffic, done } = await nicWithMsix();
    const router = new RecordingRouter();
    await enable(0x8000);
    d.useMsiRouter(router); // offered while MSI-X is on: connected at once
    expect(d.routedVectors).toEqual([0]);
    await traffic();
    host.advance(10);
    await tick();
    expect(heard).toEqual([]);
    d.useMsiRouter(undefined);
    expect(router.live).toEqual([]);
    expect(d.routedVectors).toEqual([]);
    // What the nic signalled while routed (the recording router delivered nothing) is heard now.
    await tick();
    expect(heard.length).toBe(1);
    expect(heard[0]!.count).toBeGreaterThan(0n);

    const second = new RecordingRouter();
    d.useMsiRouter(second);
    expect(second.live.length).toBe(1);
    await done(); // unrealize
    expect(second.made.map((m) => m.disconnects)).toEqual([1]);
    d.useMsiRouter(undefined); // after unrealize: nothing left to do
    expect(second.made.map((m) => m.disconnects)).toEqual([1]);
  });

  it('a refused connect is warned once, naming the vector; the VMM delivers the vector as before', async () => {
    const { host, d, heard, warnings, enable, traffic, done } = await nicWithMsix();
    const router = new RecordingRouter();
    router.refuse.add(0x40);
    d.useMsiRouter(router);
    await enable(0x8000);
    expect(d.routedVectors).toEqual([]);
    expect(warnings.map((w) => w.message)).toEqual([
      expect.stringMatching(/connect the route of MSIX vector 0.*no route for data 0x40; the VMM delivers the vector itself/),
    ]);
    await traffic();
    host.advance(10);
    await tick();
    expect(heard.length).toBeGreaterThan(0);
    expect(heard[0]).toMatchObject({ mode: 'msix', vector: 0, message: { address: 0xfee0_0000n, data: 0x40 } });
    // Other accesses do not ask again for the same message; a new message is tried.
    await d.barWrite(0, entry(1) + 8, 4, 0x51n);
    expect(warnings.length).toBe(1);
    await d.barWrite(0, entry(0) + 8, 4, 0x42n);
    expect(d.routedVectors).toEqual([0]);
    expect(router.live.map(([, data]) => data)).toEqual([0x42]);
    await d.barWrite(0, NIC_CTRL, 4, 0n);
    await done();
    expect(router.live).toEqual([]);
  });

  it('MSI: the enabled vector is connected with the message in the capability, updated when the guest rewrites it', async () => {
    const host = new SimHost(MACHINE);
    const vmm = await vmmOn(host);
    try {
      const d = (await vmm.addDevice(described(EDU, 'legacy'))) as VfioPciDevice;
      const heard: VfioPciInterrupt[] = [];
      d.on('interrupt', (e) => heard.push(e));
      const router = new RecordingRouter();
      d.useMsiRouter(router);
      await d.configWrite(0x04, 2, (await d.configRead(0x04, 2)) | 0x6);
      const cap = await findCap(d, 0x05);
      const flags = await d.configRead(cap + 2, 2);
      const is64 = (flags & 0x80) !== 0;
      const dataAt = cap + (is64 ? 0x0c : 0x08);
      await d.configWrite(cap + 4, 4, 0xfee0_0000);
      await d.configWrite(dataAt, 2, 0x4041);
      await d.configWrite(cap + 2, 2, flags | 1);
      expect(d.interruptMode).toBe('msi');
      expect(router.live).toEqual([[expect.any(Number), 0x4041]]);
      await d.barWrite(0, EDU_IRQ_RAISE, 4, 1n);
      await tick();
      expect(heard).toEqual([]);
      await d.configWrite(dataAt, 2, 0x4042);
      expect(router.made[0]!.messages.map((m) => m.data)).toEqual([0x4041, 0x4042]);
      await d.configWrite(cap + 2, 2, flags & ~1);
      expect(router.live).toEqual([]);
      expect(router.made[0]!.disconnects).toBe(1);
    } finally {
      await vmm.close();
    }
  });
});
