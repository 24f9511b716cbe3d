// VfioMigration across what devices offer: without PRE_COPY, without P2P, STOP_COPY only, and a
// mediated device. Each migrates a receiving nic to a second host, byte for byte.

import { describe, expect, it } from 'vitest';
import { VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_STOP as STOP } from '@vmmkit/core/uapi';
import type { SimMigrationFlag } from '@vmmkit/sim';
import { BACKENDS, FLAGS, concat, drain, rig, startTraffic, type Backend, type RigOptions } from './vfio-migration-harness.js';

interface Variant {
  readonly name: string;
  readonly flags: readonly SimMigrationFlag[];
  readonly mdev?: boolean;
  /** The events of the source walk and of the destination's load and start. */
  readonly source: readonly string[];
  readonly destination: readonly string[];
}

const VARIANTS: readonly Variant[] = [
  {
    name: 'without PRE_COPY', flags: FLAGS.noPrecopy,
    source: ['RUNNING>RUNNING_P2P', 'RUNNING_P2P>STOP_COPY'],
    destination: ['RUNNING>RESUMING', 'RESUMING>RUNNING_P2P', 'RUNNING_P2P>RUNNING'],
  },
  {
    name: 'without P2P', flags: FLAGS.noP2p,
    source: ['RUNNING>PRE_COPY', 'PRE_COPY>STOP_COPY'],
    destination: ['RUNNING>RESUMING', 'RESUMING>RUNNING'],
  },
  {
    name: 'STOP_COPY only', flags: FLAGS.stopCopyOnly,
    source: ['RUNNING>STOP_COPY'],
    destination: ['RUNNING>RESUMING', 'RESUMING>RUNNING'],
  },
  {
    name: 'a mediated device', flags: FLAGS.full, mdev: true,
    source: ['RUNNING>PRE_COPY', 'PRE_COPY>PRE_COPY_P2P', 'PRE_COPY_P2P>STOP_COPY'],
    destination: ['RUNNING>RESUMING', 'RESUMING>RUNNING_P2P', 'RUNNING_P2P>RUNNING'],
  },
];

/** The source side as a VMM drives it: setup, precopy rounds while traffic runs, switchover, the rest. */
async function migrateOut(backend: Backend, options: RigOptions) {
  const src = await rig(backend, options);
  const { mig } = src;
  await startTraffic(src.nic);
  await mig.saveSetup();
  const chunks: Uint8Array[] = [];
  for (let round = 0; round < 3; round++) {
    src.host.advance(5);
    const got = mig.precopySupported ? await drain(mig) : undefined;
    expect(got?.until ?? 'empty').toBe('empty');
    chunks.push(...(got?.chunks ?? []));
  }
  await mig.prepareSwitchover();
  await mig.switchover();
  const rest = await drain(mig);
  expect(rest.until).toBe('end');
  chunks.push(...rest.chunks);
  return { src, stream: concat(chunks), state: src.host.deviceState(src.name) };
}

describe.for(BACKENDS)('VfioMigration variants on the %s backend', (backend) => {
  it.for(VARIANTS)('migrates a nic $name', async (variant) => {
    const options = { flags: variant.flags, mdev: variant.mdev, chunkSize: 8192 };
    const { src, stream, state } = await migrateOut(backend, options);
    expect(src.mig.precopySupported).toBe(variant.flags.includes('PRE_COPY'));
    expect(src.mig.p2pSupported).toBe(variant.flags.includes('P2P'));
    expect(src.changes).toEqual(variant.source);

    const dst = await rig(backend, options);
    await dst.mig.loadSetup();
    await dst.mig.writeChunk(stream);
    await dst.mig.start();
    expect([dst.mig.state, dst.mig.dataFd]).toEqual([RUNNING, -1]);
    expect(dst.changes).toEqual(variant.destination);
    expect(dst.host.deviceState(dst.name)).toEqual(state);
    await dst.close();

    await src.mig.setStateOrReset(STOP);
    await src.close();
  });
});
