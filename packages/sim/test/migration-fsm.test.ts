// The VFIO migration v2 state machine on the simulated host, checked against the kernel's rules:
// the next-hop walk of vfio_mig_get_next_state for every pair of states and every combination of
// optional features, and every transition driven through VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE.

import { describe, expect, it } from 'vitest';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import { SimHost, type SimMigrationFlag } from '../src/index.js';
import { MIG_STATE_NAMES, migNextState, migStateSupported } from '../src/vfio/mig-fsm.js';
import { expectErrno, getMigState, openDevice, setMigState } from './device-harness.js';

const NIC = '0000:00:04.0';
const SAVING = new Set([PRE_COPY, PRE_COPY_P2P, STOP_COPY]);
const FEATURES: { name: string; flags: SimMigrationFlag[] }[] = [
  { name: 'STOP_COPY', flags: ['STOP_COPY'] },
  { name: 'STOP_COPY|P2P', flags: ['STOP_COPY', 'P2P'] },
  { name: 'STOP_COPY|PRE_COPY', flags: ['STOP_COPY', 'PRE_COPY'] },
  { name: 'STOP_COPY|P2P|PRE_COPY', flags: ['STOP_COPY', 'P2P', 'PRE_COPY'] },
];
const bits = (flags: readonly SimMigrationFlag[]) =>
  (flags.includes('STOP_COPY') ? VFIO_MIGRATION_STOP_COPY : 0) | (flags.includes('P2P') ? VFIO_MIGRATION_P2P : 0) |
  (flags.includes('PRE_COPY') ? VFIO_MIGRATION_PRE_COPY : 0);
const name = (s: number) => MIG_STATE_NAMES[s];

/** A NIC's migration stream, saved through STOP_COPY on a host of its own. */
function savedState(): Uint8Array {
  const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic', migration: { flags: ['STOP_COPY'] } }] });
  const fd = openDevice(host, NIC);
  const data = setMigState(host, fd, STOP_COPY);
  const buf = new Uint8Array(1 << 20);
  const n = host.read(data, buf);
  expect(host.read(data, new Uint8Array(16))).toBe(0);
  return buf.subarray(0, n);
}

/** The arcs a driver implements, per the vfio_mig_get_next_state comment. */
function arcs(p2p: boolean, pre: boolean): [number, number][] {
  const a: [number, number][] = [[STOP, STOP_COPY], [STOP_COPY, STOP], [STOP, RESUMING], [RESUMING, STOP]];
  if (p2p) a.push([RUNNING, RUNNING_P2P], [RUNNING_P2P, RUNNING], [RUNNING_P2P, STOP], [STOP, RUNNING_P2P]);
  else a.push([RUNNING, STOP], [STOP, RUNNING]);
  if (pre) a.push([RUNNING, PRE_COPY], [PRE_COPY, RUNNING]);
  if (pre && !p2p) a.push([PRE_COPY, STOP_COPY]);
  if (pre && p2p) {
    a.push([PRE_COPY, PRE_COPY_P2P], [PRE_COPY_P2P, PRE_COPY], [PRE_COPY_P2P, RUNNING_P2P], [RUNNING_P2P, PRE_COPY_P2P]);
    a.push([PRE_COPY_P2P, STOP_COPY]);
  }
  return a;
}

/**
 * Every shortest path by the uAPI's combination rule: saving states (which share one session)
 * may be inside a path only when the whole path stays in the saving group.
 */
function shortestPaths(graph: [number, number][], from: number, to: number): number[][] {
  const valid = (p: number[]) => p.every((s) => SAVING.has(s)) || p.slice(1, -1).every((s) => !SAVING.has(s));
  let frontier = [[from]];
  for (let depth = 0; depth < 8; depth++) {
    const done = frontier.filter((p) => p.at(-1) === to && valid(p));
    if (done.length) return done;
    frontier = frontier.flatMap((p) => graph.filter(([a, b]) => a === p.at(-1) && !p.includes(b)).map(([, b]) => [...p, b]));
  }
  return [];
}

function walk(flags: number, from: number, to: number): number[] {
  const path = [from];
  while (path.at(-1) !== to) path.push(migNextState(flags, path.at(-1)!, to));
  return path;
}

describe('vfio_mig_get_next_state', () => {
  for (const { name: fname, flags } of FEATURES) {
    it(`takes the one shortest valid path between every pair of states (${fname})`, () => {
      const f = bits(flags);
      const states = [STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P].filter((s) => migStateSupported(f, s));
      const graph = arcs(flags.includes('P2P'), flags.includes('PRE_COPY'));
      for (const from of states) {
        for (const to of states) {
          // The uAPI forbids STOP_COPY -> PRE_COPY and STOP_COPY -> PRE_COPY_P2P outright.
          if (from === STOP_COPY && (to === PRE_COPY || to === PRE_COPY_P2P)) {
            expect(() => migNextState(f, from, to), `${name(from)} -> ${name(to)}`).toThrow(/cannot reach/);
            continue;
          }
          const expected = shortestPaths(graph, from, to);
          expect(expected, `${name(from)} -> ${name(to)} has one shortest path`).toHaveLength(1);
          expect(walk(f, from, to).map(name), `${name(from)} -> ${name(to)}`).toEqual(expected[0]!.map(name));
        }
      }
    });
  }

  it('follows the combination paths the kernel comment lists when every feature is present', () => {
    const all = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
    const listed = [
      [PRE_COPY, PRE_COPY_P2P, STOP_COPY], [PRE_COPY, RUNNING, RUNNING_P2P, STOP, RESUMING],
      [PRE_COPY_P2P, RUNNING_P2P, RUNNING], [RESUMING, STOP, RUNNING_P2P, RUNNING, PRE_COPY],
      [RESUMING, STOP, STOP_COPY], [RUNNING, RUNNING_P2P, STOP, STOP_COPY], [RUNNING_P2P, RUNNING, PRE_COPY],
      [STOP, RUNNING_P2P, PRE_COPY_P2P], [STOP_COPY, STOP, RUNNING_P2P, RUNNING],
    ];
    for (const path of listed) expect(walk(all, path[0]!, path.at(-1)!)).toEqual(path);
  });

  it('refuses ERROR and unknown states as targets, and any move out of ERROR', () => {
    const f = VFIO_MIGRATION_STOP_COPY;
    expect(() => migNextState(f, RUNNING, ERROR)).toThrow(/does not support/);
    expect(() => migNextState(f, RUNNING, 8)).toThrow(/does not support/);
    expect(() => migNextState(f, RUNNING, RUNNING_P2P)).toThrow(/does not support/);
    expect(() => migNextState(f, ERROR, RUNNING)).toThrow(/no arcs/);
  });
});

describe('MIG_DEVICE_STATE through the device fd', () => {
  for (const { name: fname, flags } of FEATURES) {
    it(`moves between every pair of supported states, with a data fd exactly where a session starts (${fname})`, () => {
      const f = bits(flags);
      const states = [STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P].filter((s) => migStateSupported(f, s));
      for (const from of states) {
        for (const to of states) {
          const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic', migration: { flags } }] });
          const fd = openDevice(host, NIC);
          const first = setMigState(host, fd, from);
          // A device leaves RESUMING only with a state to load, as real drivers require.
          if (from === RESUMING) host.write(first, savedState());
          if (first >= 0) host.close(first);
          const label = `${name(from)} -> ${name(to)}`;
          if (from === STOP_COPY && (to === PRE_COPY || to === PRE_COPY_P2P)) {
            expectErrno(() => setMigState(host, fd, to), 'EINVAL');
            expect(getMigState(host, fd), label).toBe(STOP_COPY);
            continue;
          }
          const dataFd = setMigState(host, fd, to);
          expect(getMigState(host, fd), label).toBe(to);
          const session = from !== to && (to === RESUMING || (SAVING.has(to) && !SAVING.has(from)));
          expect(dataFd >= 0, label).toBe(session);
          if (dataFd >= 0) host.close(dataFd);
          host.close(fd);
          expect(host.census(), label).toEqual({ fds: 0, objects: {} });
        }
      }
    });
  }

  it('refuses states the device does not support and leaves its state alone', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic', migration: { flags: ['STOP_COPY'] } }] });
    const fd = openDevice(host, NIC);
    for (const bad of [ERROR, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P, 8, 0xffff_ffff]) expectErrno(() => setMigState(host, fd, bad), 'EINVAL');
    expect(getMigState(host, fd)).toBe(RUNNING);
  });
});
