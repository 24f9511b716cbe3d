// The differential fuzzer (@vmmkit/sim/testing): on SimHost alone, that a seed always gives the
// same trace, that no sequence makes SimHost throw, and that the shrinker and the tolerances work;
// in the kernel tier, a campaign of thousands of sequences against Linux 7.2 with SimHost in 7.2
// mode, which must show no divergence beyond the named tolerated ones.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { release } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostKernel } from '@vmmkit/core';
import { SimHost } from '../src/index.js';
import {
  compareTraces, DEFAULT_LAYOUT, discoverMachine, execute, fuzzMachineConfig, generate, layoutOf, OPS, runBoth, runCampaign,
  stringify, THROW, TOLERATED, type CampaignReport, type FuzzSide, type Sequence,
} from '../src/testing/index.js';
import { mttyMdev, onTarget, selftestTargets, type1Unavailable, type HostTarget } from './host-targets.js';

const NAMES = [...DEFAULT_LAYOUT.edu, DEFAULT_LAYOUT.mdev];

/** A fresh SimHost of the fuzzed machine for every sequence. */
function simSide(kernel: '6.12' | '7.2', layout = DEFAULT_LAYOUT): FuzzSide {
  const names = [...layout.edu, layout.mdev];
  return { host: () => new SimHost(fuzzMachineConfig(kernel, layout)), machine: (host) => discoverMachine(host, names) };
}

function traceOf(kernel: '6.12' | '7.2', sequence: Sequence) {
  const host = new SimHost(fuzzMachineConfig(kernel));
  const trace = execute(host, discoverMachine(host, NAMES), sequence);
  // Everything the sequence made is gone again.
  expect(host.census().fds).toBe(0);
  return trace;
}

describe('differential fuzzer (SimHost)', () => {
  it('gives the same sequence and the same trace for the same seed, and SimHost never throws', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const sequence = generate(seed);
      expect(stringify(generate(seed))).toBe(stringify(sequence));
      expect(sequence.length).toBeGreaterThanOrEqual(10);
      for (const kernel of ['7.2', '6.12'] as const) {
        const trace = traceOf(kernel, sequence);
        expect(trace.filter((r) => r.r === THROW), `seed ${seed} on ${kernel}`).toEqual([]);
        if (kernel === '7.2') expect(stringify(traceOf(kernel, sequence))).toBe(stringify(trace));
      }
    }
  });

  it('records a failed call by its errno name, so that two hosts failing differently diverge', () => {
    const failures = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      for (const r of traceOf('7.2', generate(seed))) if (r.r !== 'ok') failures.add(r.r);
    }
    expect([...failures].filter((r) => !/^E[A-Z0-9]+$/.test(r))).toEqual([]);
    expect(failures.size).toBeGreaterThan(3);
  });

  it('draws every operation within a few hundred seeds', () => {
    const ops = new Set<string>();
    for (let seed = 1; seed <= 400; seed++) for (const step of generate(seed)) ops.add(step.op);
    expect([...ops].sort()).toEqual([...OPS.keys()].sort());
  });

  it('shrinks a divergence (SimHost 6.12 against 7.2) to a minimal sequence that still diverges', () => {
    const options = { firstSeed: 1, sequences: 30, reference: simSide('7.2'), candidate: simSide('6.12'), tolerated: [], maxShrunk: 2 };
    const report = runCampaign(options);
    expect(report.diverged).toBeGreaterThan(0);
    for (const d of report.divergences) {
      expect(d.sequence.length).toBeLessThan(d.originalLength);
      expect(d.sequence.length).toBeLessThanOrEqual(5);
      const again = runBoth(options, d.sequence).comparison.divergence;
      expect(again?.op).toBe(d.divergence.op);
      // 1-minimal: without any one of its steps, the sequence no longer diverges there.
      for (let i = 0; i < d.sequence.length - 1; i++) {
        const smaller = d.sequence.filter((_, k) => k !== i);
        const div = runBoth(options, smaller).comparison.divergence;
        expect(div !== undefined && smaller[div.index]!.id === d.sequence[d.sequence.length - 1]!.id).toBe(false);
      }
    }
  });

  it('lets a named tolerance pass only the difference it describes', () => {
    const sequence: Sequence = [{ id: 0, op: 'mig.read', a: {} }, { id: 1, op: 'ioas.alloc', a: {} }];
    const linux = [{ r: 'ok', v: '24', o: { data: 'aa' } }, { r: 'ok', v: '0' }];
    const tolerated = compareTraces(sequence, linux, [{ r: 'ok', v: '40', o: { data: 'bb' } }, { r: 'ok', v: '0' }], TOLERATED);
    expect(tolerated.divergence).toBeUndefined();
    expect(tolerated.tolerated.get('migration-data')).toBe(1);
    const errno = compareTraces(sequence, linux, [{ r: 'ENOMSG' }, { r: 'ok', v: '0' }], TOLERATED);
    expect(errno.divergence?.index).toBe(0);
    const other = compareTraces(sequence, linux, [linux[0]!, { r: 'EINVAL' }], TOLERATED);
    expect(other.divergence?.op).toBe('ioas.alloc');
    for (const t of TOLERATED) expect(t.reason.length).toBeGreaterThan(40);
    expect(new Set(TOLERATED.map((t) => t.name)).size).toBe(TOLERATED.length);
  });
});

/** Why the real kernel cannot be fuzzed here, if it cannot: it needs the selftest mock, type1, both edu devices and the mdev. */
function linuxUnavailable(target: HostTarget): string | undefined {
  const edu = (process.env.VMMKIT_TEST_EDU_DEVICES ?? '').split(',').filter(Boolean);
  return target.unavailable ?? type1Unavailable() ?? mttyMdev().unavailable
    ?? (edu.length < 2 ? 'VMMKIT_TEST_EDU_DEVICES names fewer than two edu devices' : undefined);
}

/** The kernel's complaints so far (WARNING, BUG, Oops lines of its log), or undefined where the log cannot be read. */
function kernelComplaints(): string[] | undefined {
  try {
    return execFileSync('dmesg', { encoding: 'utf8' }).split('\n').filter((l) => /WARNING:|BUG:|Oops/.test(l));
  } catch {
    return undefined;
  }
}

/** How many sequences the tier compares (VMMKIT_DIFFFUZZ_SEQUENCES), in chunks of this many. */
const SEQUENCES = Number(process.env.VMMKIT_DIFFFUZZ_SEQUENCES ?? 2500);
const CHUNK = 250;

function describeAgainstLinux(target: HostTarget): void {
  const unavailable = linuxUnavailable(target);
  describe.skipIf(unavailable !== undefined)(onTarget('differential fuzzer against the real kernel', { ...target, unavailable }), () => {
    const reports: CampaignReport[] = [];
    let complaintsBefore: number | undefined;
    beforeAll(() => {
      complaintsBefore = kernelComplaints()?.length;
    });
    let linux: HostKernel;
    let names: string[];
    const reference: FuzzSide = { host: () => linux, machine: () => discoverMachine(linux, names) };

    it.each(Array.from({ length: Math.ceil(SEQUENCES / CHUNK) }, (_, i) => i))('sequences of chunk %i, SimHost in 7.2 mode', (chunk) => {
      linux ??= target.host();
      const edu = process.env.VMMKIT_TEST_EDU_DEVICES!.split(',').map((s) => s.trim());
      names = [edu[0]!, edu[1]!, mttyMdev().uuid!];
      const layout = layoutOf(discoverMachine(linux, names));
      const first = 1 + chunk * CHUNK;
      reports.push(runCampaign({
        firstSeed: first, sequences: Math.min(CHUNK, SEQUENCES - chunk * CHUNK), reference, candidate: simSide('7.2', layout),
        maxShrunk: Number(process.env.VMMKIT_DIFFFUZZ_SHRINK ?? 3),
      }));
      const report = reports.at(-1)!;
      for (const d of report.divergences) console.log(`divergence (seed ${d.seed}, ${d.originalLength} steps shrunk to ${d.sequence.length}): ${stringify(d)}`);
      for (const d of report.more) console.log(`divergence (seed ${d.seed}, not shrunk): ${stringify(d.divergence)}`);
    }, 1_800_000);

    it('finds no divergence beyond the named tolerated ones', () => {
      const total = {
        kernel: release(), sequences: reports.reduce((n, r) => n + r.sequences, 0), calls: reports.reduce((n, r) => n + r.calls, 0),
        diverged: reports.reduce((n, r) => n + r.diverged, 0), seconds: Math.round(reports.reduce((n, r) => n + r.elapsedMs, 0) / 1000),
        tolerated: Object.fromEntries(TOLERATED.map((t) => [t.name, reports.reduce((n, r) => n + (r.tolerated[t.name] ?? 0), 0)])),
        divergences: reports.flatMap((r) => r.divergences),
        // What the sequences made the kernel complain about (the tier's guest kernel has no other load).
        kernelComplaints: complaintsBefore === undefined ? [] : (kernelComplaints() ?? []).slice(complaintsBefore),
      };
      console.log(`differential fuzzer against Linux ${total.kernel}: ${total.sequences} sequences, ${total.calls} calls compared per host, ` +
        `${total.diverged} diverged; tolerated: ${Object.entries(total.tolerated).map(([n, c]) => `${n} ${c}`).join(', ')}; ${total.seconds} s`);
      if (process.env.VMMKIT_TIER_RESULTS) writeFileSync(join(process.env.VMMKIT_TIER_RESULTS, 'difffuzz.json'), stringify(total));
      expect(total.sequences).toBe(SEQUENCES);
      expect(total.divergences.map((d) => `seed ${d.seed} step ${d.divergence.index} ${d.divergence.op}`)).toEqual([]);
      expect(total.diverged).toBe(0);
      expect(total.kernelComplaints).toEqual([]);
    });
  });
}

for (const target of selftestTargets().filter((t) => t.name === 'LinuxHost')) describeAgainstLinux(target);
