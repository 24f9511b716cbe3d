// VfioMigration when the kernel refuses: every state change fails in turn (fault injection on
// VFIO_DEVICE_FEATURE) and the device reaches the recover state, or is reset to RUNNING when
// recovery fails too; corrupt streams refused at start(); the data_fd out-of-sync rule. Nothing
// leaks on any path.

import { describe, expect, it } from 'vitest';
import { VfioError } from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_RESET,
} from '@vmmkit/core/uapi';
import type { SimMigrationFlag } from '@vmmkit/sim';
import { migStateName, type VfioMigration } from '../src/index.js';
import {
  BACKENDS, FLAGS, NIC, concat, drain, rig, ringProgrammed, startTraffic, type Backend, type Rig,
} from './vfio-migration-harness.js';

/** The VfioError `act` throws. */
async function failure(act: () => Promise<unknown>): Promise<VfioError> {
  try {
    await act();
  } catch (e) {
    expect(e).toBeInstanceOf(VfioError);
    return e as VfioError;
  }
  throw new Error('expected a VfioError');
}

/** A complete device-state stream from a source nic that received some traffic. */
async function sourceStream(backend: Backend): Promise<Uint8Array> {
  const src = await rig(backend);
  await startTraffic(src.nic);
  src.host.advance(15);
  await src.mig.switchover();
  const stream = concat((await drain(src.mig)).chunks);
  await src.mig.setStateOrReset(RUNNING);
  await src.close();
  return stream;
}

interface Change {
  readonly name: string;
  readonly flags: readonly SimMigrationFlag[];
  /** The state the change asks for, as the error names it. */
  readonly target: string;
  /** Where a refused change is recovered to; 'reset' for set_state_or_reset changes. */
  readonly recover: string;
  /** Bring the device to where the change starts (with the nic's ring programmed). */
  before(r: Rig, stream: Uint8Array): void | Promise<void>;
  act(m: VfioMigration): Promise<void>;
  /** Which VFIO_DEVICE_FEATURE call of `act` is the state change (start() makes two). */
  readonly nth?: number;
}

const precopying = async (r: Rig) => {
  await startTraffic(r.nic);
  await r.mig.saveSetup();
  await drain(r.mig);
};
const resuming = async (r: Rig, stream: Uint8Array) => {
  await r.mig.loadSetup();
  await r.mig.writeChunk(stream);
};

const CHANGES: readonly Change[] = [
  { name: 'saveSetup', flags: FLAGS.full, target: 'PRE_COPY', recover: 'RUNNING', before: async (r) => await startTraffic(r.nic), act: (m) => m.saveSetup() },
  { name: 'prepareSwitchover in PRE_COPY', flags: FLAGS.full, target: 'PRE_COPY_P2P', recover: 'reset', before: precopying, act: (m) => m.prepareSwitchover() },
  { name: 'prepareSwitchover in RUNNING', flags: FLAGS.noPrecopy, target: 'RUNNING_P2P', recover: 'reset', before: async (r) => await startTraffic(r.nic), act: (m) => m.prepareSwitchover() },
  {
    name: 'switchover from PRE_COPY_P2P', flags: FLAGS.full, target: 'STOP_COPY', recover: 'STOP',
    before: async (r) => { await precopying(r); await r.mig.prepareSwitchover(); }, act: (m) => m.switchover(),
  },
  { name: 'switchover from PRE_COPY', flags: FLAGS.noP2p, target: 'STOP_COPY', recover: 'STOP', before: precopying, act: (m) => m.switchover() },
  { name: 'switchover from RUNNING', flags: FLAGS.stopCopyOnly, target: 'STOP_COPY', recover: 'STOP', before: async (r) => await startTraffic(r.nic), act: (m) => m.switchover() },
  {
    name: 'resumeRunning from STOP_COPY', flags: FLAGS.full, target: 'RUNNING', recover: 'reset',
    before: async (r) => { await startTraffic(r.nic); await r.mig.switchover(); }, act: (m) => m.resumeRunning(),
  },
  { name: 'loadSetup', flags: FLAGS.full, target: 'RESUMING', recover: 'reset', before: async (r) => await startTraffic(r.nic), act: (m) => m.loadSetup() },
  { name: 'start, leaving RESUMING', flags: FLAGS.full, target: 'RUNNING_P2P', recover: 'reset', before: resuming, act: (m) => m.start() },
  { name: 'start, after the state loaded', flags: FLAGS.full, target: 'RUNNING', recover: 'reset', before: resuming, act: (m) => m.start(), nth: 2 },
  { name: 'start without P2P', flags: FLAGS.noP2p, target: 'RUNNING', recover: 'reset', before: resuming, act: (m) => m.start() },
];

describe.for(BACKENDS)('VfioMigration failures on the %s backend', (backend) => {
  describe.for(CHANGES)('$name', (change) => {
    const attempts = change.recover === 'reset' ? [[1]] : [[1], [1, 2]];
    it.for(attempts)('with faults on state changes %j: recovers or resets, and leaks nothing', async (faults) => {
      const stream = await sourceStream(backend);
      const r = await rig(backend, { flags: change.flags });
      await change.before(r, stream);
      const nth = change.nth ?? 1;
      for (const n of faults) r.host.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EIO', nth: nth + n - 1 });
      const e = await failure(() => change.act(r.mig));
      expect(r.host.kernel.faults.pending).toBe(0);
      expect(e.device).toBe(NIC);
      expect(e.errno).toBe('EIO');
      expect(e.ioctl).toBe('VFIO_DEVICE_FEATURE');
      expect(e.message).toContain(`failed to set the migration state to ${change.target}`);
      const recovered = faults.length === 1 && change.recover !== 'reset';
      if (recovered) {
        expect(migStateName(r.mig.state)).toBe(change.recover);
        expect(e.message).toContain(`put back in ${change.recover}`);
        expect(await ringProgrammed(r.nic)).toBe(true); // no reset
      } else {
        expect(r.mig.state).toBe(RUNNING);
        expect(e.message).toContain('reset to RUNNING');
        expect(await ringProgrammed(r.nic)).toBe(false); // the reset cleared the nic
        expect(r.changes.at(-1) ?? 'RUNNING').toMatch(/RUNNING$/); // no event when it was RUNNING already
      }
      if (change.nth === undefined && change.name.startsWith('start')) expect(e.message).toContain('the device state did not load');
      if (change.nth !== undefined) expect(e.message).not.toContain('did not load');
      expect(r.warnings).toEqual([expect.stringContaining(`failed to set the migration state to ${change.target}`)]);
      // No recover state holds a session (a switchover put back in STOP ends it), and a reset ends all.
      expect(r.mig.dataFd).toBe(-1);
      await r.mig.resumeRunning();
      await r.close();
    });
  });

  it('marks the device ERROR when neither recovery nor reset works', async () => {
    const r = await rig(backend, { resettable: false });
    r.host.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EIO', nth: 1 });
    r.host.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EBUSY', nth: 2 });
    const e = await failure(() => r.mig.saveSetup());
    expect(e.message).toMatch(/putting it back in RUNNING failed too \(VFIO_DEVICE_FEATURE -> EBUSY\); resetting the device failed too \(VFIO_DEVICE_RESET -> EINVAL\)/);
    expect(e.errno).toBe('EIO'); // the failure reported is the first one
    expect(r.mig.state).toBe(ERROR);
    expect(r.changes).toEqual(['RUNNING>ERROR']);
    await r.mig.resumeRunning(); // the kernel never left RUNNING, so asking for it works
    expect(r.mig.state).toBe(RUNNING);
    await r.close();
  });
});

describe.for(BACKENDS)('corrupt streams on the %s backend', (backend) => {
  const corruptions: [string, (s: Uint8Array) => Uint8Array][] = [
    ['a device state that does not parse', (s) => { const c = s.slice(); c[32]! ^= 0xff; return c; }],
    ['a stream cut short', (s) => s.subarray(0, s.byteLength - 1)],
    ['an empty stream', () => new Uint8Array(0)],
  ];
  it.for(corruptions)('refuses %s at start(): the device is reset and nothing leaks', async ([, corrupt]) => {
    const stream = corrupt(await sourceStream(backend));
    const r = await rig(backend);
    await startTraffic(r.nic);
    await r.mig.loadSetup();
    await r.mig.writeChunk(stream);
    const e = await failure(() => r.mig.start());
    expect(e.message).toMatch(/^0000:00:05\.0: failed to start the device: the device state did not load: .*reset to RUNNING/);
    expect(e.errno).toBe('EINVAL'); // what the kernel said when it could not load the state
    expect([r.mig.state, r.mig.dataFd]).toEqual([RUNNING, -1]);
    expect(await ringProgrammed(r.nic)).toBe(false);
    expect(r.changes).toEqual(['RUNNING>RESUMING', 'RESUMING>RUNNING']);
    await r.close();
  });

  it('refuses a stream whose header is not a device state at writeChunk(), then at start()', async () => {
    const r = await rig(backend);
    await r.mig.loadSetup();
    const e = await failure(() => r.mig.writeChunk(new Uint8Array(64).fill(7)));
    expect(e.message).toMatch(/failed to write the migration data/);
    expect(e.errno).toBe('EINVAL');
    expect((await failure(() => r.mig.start())).message).toContain('the device state did not load');
    expect([r.mig.state, r.mig.dataFd]).toEqual([RUNNING, -1]);
    await r.close();
  });
});

describe.for(BACKENDS)('data fd ownership on the %s backend', (backend) => {
  it('closes a new data fd out of sync with the one held (the device was reset behind vmmkit)', async () => {
    const r = await rig(backend);
    await r.mig.saveSetup();
    const held = r.mig.dataFd;
    r.host.ioctl(r.vfio.fd, VFIO_DEVICE_RESET); // ends the session; vmmkit does not know
    const fds = r.host.census().fds;
    const e = await failure(() => r.mig.setState(PRE_COPY, RUNNING));
    expect(e.errno).toBe('EBADF');
    expect(e.message).toContain('data_fd out of sync');
    expect(r.host.census().fds).toBe(fds); // the new fd was closed
    expect([r.mig.state, r.mig.dataFd]).toEqual([PRE_COPY, held]);
    await expect(r.mig.readChunk()).rejects.toThrow(/ENODEV/); // the held session is dead
    await r.mig.resumeRunning();
    expect(r.host.census().objects.data_fd).toBeUndefined();
    await r.close();
  });

  it('closes the data fd when the device is reset during recovery', async () => {
    const r = await rig(backend);
    await r.mig.saveSetup();
    expect(r.mig.dataFd).toBeGreaterThanOrEqual(0);
    r.host.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EIO' });
    await failure(() => r.mig.setStateOrReset(PRE_COPY + 1)); // PRE_COPY_P2P
    expect([r.mig.state, r.mig.dataFd]).toEqual([RUNNING, -1]);
    expect(r.host.census().objects.data_fd).toBeUndefined();
    await r.close();
  });
});
