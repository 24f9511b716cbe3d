// The guest's driver of a nic served over vfio-user, for the VM-level migration tests: it points
// the nic's receive ring at RING and keeps consuming, so the nic writes guest RAM all along.

import { PCI_COMMAND } from '@vmmkit/core/uapi';
import { NIC_CTRL, NIC_CTRL_RX_EN, NIC_RATE_PPS, NIC_RX_HEAD, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE, NIC_RX_RING_SIZE, NIC_RX_TAIL } from '@vmmkit/sim';
import type { GuestMemory } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';

/** Where the receive ring lives in guest RAM: 256 slots of 256 bytes, pages 0x40..0x4f. */
export const RING = 0x4_0000n;

/** Bus mastering on, the ring programmed, receiving at 10,000 packets a second. */
export async function startNic(nic: VfioPciDevice): Promise<void> {
  await nic.configWrite(PCI_COMMAND, 2, 0x6);
  await nic.barWrite(0, NIC_RX_RING_BASE, 8, RING);
  await nic.barWrite(0, NIC_RX_RING_SIZE, 4, 256n);
  await nic.barWrite(0, NIC_RX_PKT_SIZE, 4, 256n);
  await nic.barWrite(0, NIC_RATE_PPS, 4, 10_000n);
  await nic.barWrite(0, NIC_CTRL, 4, BigInt(NIC_CTRL_RX_EN));
}

/** Consume what arrived, so the nic goes on writing its ring. */
export async function consume(nic: VfioPciDevice): Promise<void> {
  await nic.barWrite(0, NIC_RX_TAIL, 4, await nic.barRead(0, NIC_RX_HEAD, 4));
}

/**
 * Break the nic's dirty tracking on purpose: the first ring page it finds the nic wrote after the
 * first full pass, it forgets then and every time after, so a destination keeps that page's old
 * bytes (the nothing-lost tests' negative control).
 */
export function dropFirstRingPage(nic: VfioPciDevice, memory: GuestMemory): void {
  const tracking = nic.vfio.container!.dirtyTracking;
  const sync = tracking.sync.bind(tracking);
  let lost = -1;
  tracking.sync = async (precopy) => {
    const found = await sync(precopy);
    const dirty = memory.blocks[0]!.dirty!;
    if (lost < 0) lost = dirty.nextSetBit(Number(RING / 4096n));
    if (lost >= 0 && dirty.test(lost)) dirty.clearRange(lost, 1);
    return found;
  };
}
