// Fail the 1st, 2nd, ... Nth host call of a vfio-user client's life (memfd guest RAM, the server,
// version, attach with its DMA_MAP, an eventfd for MSI, register I/O, edu DMA, detach, close),
// counted in a clean run. Every failure surfaces as a typed error and the host's census returns
// to its baseline.

import { describe, expect, it } from 'vitest';
import { GuestMemory, VmmError } from '@vmmkit/core';
import { PCI_COMMAND, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSI_IRQ_INDEX } from '@vmmkit/core/uapi';
import { EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_LIVENESS, SimHost } from '@vmmkit/sim';
import { failEachHostCall, stepErrors } from '@vmmkit/sim/testing';
import { makeClientRig, type ClientRig } from './support/client-rig.js';
import { le64 } from './support/edu-io.js';


/** The whole life; returns the errors its steps ended with (none in a clean run). */
async function life(host: SimHost): Promise<unknown[]> {
  const { errors, step } = stepErrors();
  let rig: ClientRig | undefined;
  await step(async () => { rig = await makeClientRig({ host }); });
  if (!rig) return errors;
  const { backend, device, space } = rig;
  const io = device.io;
  let efd: number | undefined;
  await step(() => backend.attachDevice('vu0', device, space));
  await step(() => { efd = host.eventfd(0, 0o4000); });
  if (efd !== undefined) {
    const fd = efd;
    await step(() => io.setIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1, eventfds: [fd] }));
  }
  await step(async () => {
    await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x06, 0]));
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), new Uint8Array([1, 0, 0, 0]));
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_SRC), le64(0x1000n));
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_DST), le64(BigInt(EDU_DMA_START)));
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_COUNT), le64(4n));
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_CMD), le64(BigInt(EDU_DMA_RUN)));
    await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_CMD), 4);
  });
  await step(() => io.reset());
  await step(() => backend.detachDevice(device));
  await step(() => rig!.close());
  if (efd !== undefined) await step(() => host.close(efd!));
  return errors;
}

describe('vfio-user client: fail the nth host call', () => {
  it('runs clean without faults', async () => {
    const host = new SimHost();
    const base = host.census();
    expect(await life(host)).toEqual([]);
    expect(host.census()).toEqual(base);
  });

  it('every failure is typed and nothing is left behind', async () => {
    const { calls, surfaced } = await failEachHostCall(life, ({ what, errors, host, baseline }) => {
      for (const e of errors) expect(e, `${what}: ${String(e)}`).toBeInstanceOf(VmmError);
      expect(host.census(), what).toEqual(baseline);
    });
    expect(calls).toBeGreaterThan(10);
    // Most calls matter; a few (a close whose failure still frees the fd) go unnoticed.
    expect(surfaced, `${surfaced} of ${calls} faults surfaced`).toBeGreaterThan(calls / 2);
  }, 60_000);

  it('memfd guest RAM: a failed memfd_create, ftruncate or mmap leaves no fd or mapping', () => {
    for (const syscall of ['memfd_create', 'ftruncate', 'mmap'] as const) {
      for (const nth of [1, 2]) {
        const host = new SimHost();
        const base = host.census();
        host.injectFault({ syscall, nth, errno: 'ENOMEM' });
        expect(() => GuestMemory.allocate(host, [{ gpa: 0n, size: 0x1000n }, { gpa: 0x10000n, size: 0x1000n }], { backing: 'memfd' }))
          .toThrow(/cannot be allocated in a memfd/);
        expect(host.census(), `${syscall} #${nth}`).toEqual(base);
      }
    }
  });
});
