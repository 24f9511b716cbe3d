// Fail the 1st, 2nd, ... Nth host call of a server's life (creating it with a shared BAR, a
// client mapping guest RAM, setting interrupts, the doorbell's ioeventfd handed out and
// signalled, the model's DMA and interrupts, the client leaving, the server closing), counted in a clean run. Every failure surfaces as a typed error
// (or an error reply to the client) and the host's census returns to its baseline.

import { describe, expect, it } from 'vitest';
import { VmmError } from '@vmmkit/core';
import { VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX } from '@vmmkit/core/uapi';
import {
  InProcessTransport, VFIO_USER_DEVICE_GET_REGION_INFO, VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_DEVICE_SET_IRQS,
  encodeQuery, encodeRegionIoFdsRequest, encodeSetIrqs,
} from '@vmmkit/core/vfio-user';
import { NIC_DOORBELL, NIC_CTRL, NIC_CTRL_IRQ_EN, NIC_CTRL_RX_EN, NIC_IRQ_BATCH, NIC_RATE_PPS, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE, NIC_RX_RING_SIZE, SimHost, createModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { failEachHostCall, stepErrors } from '@vmmkit/sim/testing';
import { TestClient } from './support/test-client.js';
import { enableBusMaster, guestRam, mapRam } from './support/rig.js';

/** Errors a step may end with: typed ones, or the test client's report of a connection a typed error ended. */
function expectTyped(e: unknown, what: string): void {
  if (e instanceof VmmError) return;
  expect(String(e), what).toMatch(/connection closed/);
}

/** The whole life; returns the errors steps ended with (none in a clean run). */
async function life(host: SimHost): Promise<unknown[]> {
  const { errors, step } = stepErrors();
  let server: VfioUserServer | undefined;
  await step(() => { server = new VfioUserServer({ model: createModel({ model: 'nic' }), host, tickMs: 0 }); });
  if (!server) return errors;
  let ram: ReturnType<typeof guestRam> | undefined;
  const efds: number[] = [];
  const doorbell: number[] = [];
  let client: TestClient | undefined;
  await step(() => {
    const [a, b] = InProcessTransport.pair(host);
    server!.serve(b);
    client = new TestClient(a, host);
  });
  if (client) {
    const c = client;
    await step(() => c.version());
    await step(async () => {
      const reply = await c.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 2, 256));
      for (const fd of reply.fds) host.close(fd);
    });
    await step(() => { ram = guestRam(host, 0x10_0000); });
    if (ram) await step(() => mapRam(c, ram!.fd, 0n, 0x10_0000n));
    await step(() => { for (let i = 0; i < 2; i++) efds.push(host.eventfd(0, 0o4000)); });
    await step(() => c.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: efds.length }), efds));
    await step(async () => {
      const reply = await c.request(VFIO_USER_DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(2, 1));
      doorbell.push(...reply.fds);
    });
    await step(async () => {
      for (const fd of doorbell) host.write(fd, new Uint8Array(new BigUint64Array([1n]).buffer));
      await new Promise((resolve) => setImmediate(resolve));
      await c.read(2, NIC_DOORBELL, 4);
    });
    await step(async () => {
      await enableBusMaster(c);
      await c.write64(0, NIC_RX_RING_BASE, 0x4_0000n);
      await c.write32(0, NIC_RX_RING_SIZE, 16);
      await c.write32(0, NIC_RX_PKT_SIZE, 256);
      await c.write32(0, NIC_IRQ_BATCH, 4);
      await c.write32(0, NIC_RATE_PPS, 10_000);
      await c.write32(0, NIC_CTRL, NIC_CTRL_RX_EN | NIC_CTRL_IRQ_EN);
      server!.model.advance!(1);
    });
    await step(async () => {
      c.close();
      await c.closed;
    });
  }
  await step(() => server!.close());
  for (const fd of [...efds, ...doorbell]) await step(() => host.close(fd));
  if (ram) await step(() => ram!.close());
  return errors;
}

describe('vfio-user server: fail-nth over every host call', () => {
  it('ends every failure in a typed error and leaves the census at its baseline', async () => {
    const { calls, surfaced, clean } = await failEachHostCall(life, ({ what, errors, host, baseline }) => {
      for (const e of errors) expectTyped(e, what);
      expect(host.census(), what).toEqual(baseline);
    });
    expect(clean.errors).toEqual([]);
    expect(clean.host.census()).toEqual(clean.baseline);
    expect(calls).toBeGreaterThan(20);
    // Most faults surface; the rest are absorbed where that is the rule (a lost interrupt signal,
    // a close that released its fd anyway).
    expect(surfaced).toBeGreaterThan(calls / 2);
  }, 60_000);
});
