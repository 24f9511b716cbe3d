// The two-process migration, as a person would run it: `vmmkit run --incoming` and
// `vmmkit migrate` as separate node processes on the simulated host, over TCP on loopback. Both
// exit 0 and print the same SHA-256 of guest RAM. A VM whose nic `vmmkit serve` serves over vfio-user
// migrates the same way, its two servers in two more processes.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const examples = join(dirname(fileURLToPath(import.meta.url)), '..');
// The built CLI itself (beforeAll builds it), not the bin shim, so that the two processes never
// both decide to rebuild at once.
const bin = join(examples, 'dist', 'cli', 'main.js');
const VM = [
  '--sim', '-m', '64M', '-name', 'migrating',
  '-object', 'iommufd,id=iommufd0',
  '-device', 'vfio-pci,id=nic-a,host=0000:00:05.0',
  '-device', 'vfio-pci,id=nic-b,host=0000:00:06.0,iommufd=iommufd0',
];

interface Running {
  readonly child: ChildProcess;
  readonly out: string[];
  readonly err: string[];
  /** Resolves with the exit status. */
  readonly exited: Promise<number | null>;
  /** Resolves with the first stdout line matching `pattern`, printed already or later (rejects if the process exits first). */
  line(pattern: RegExp): Promise<string>;
}

const children: ChildProcess[] = [];

function vmmkit(args: string[]): Running {
  const child = spawn(process.execPath, [bin, ...args], { cwd: examples, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const out: string[] = [];
  const err: string[] = [];
  const watchers: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  const lines = (into: string[], onLine?: (l: string) => void) => {
    let partial = '';
    return (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop()!;
      for (const l of parts) {
        into.push(l);
        onLine?.(l);
      }
    };
  };
  child.stdout!.on('data', lines(out, (l) => watchers.filter((w) => w.pattern.test(l)).forEach((w) => w.resolve(l))));
  child.stderr!.on('data', lines(err));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child, out, err, exited,
    line: (pattern) => new Promise((resolve, reject) => {
      const seen = out.find((l) => pattern.test(l));
      if (seen !== undefined) return resolve(seen);
      watchers.push({ pattern, resolve });
      void exited.then((code) => reject(new Error(`vmmkit exited (${code}) before printing ${pattern}: ${[...out, ...err].join('\n')}`)));
    }),
  };
}

const hashOf = (lines: readonly string[]): string | undefined =>
  lines.map((l) => /^guest RAM sha256 ([0-9a-f]{64})$/.exec(l)?.[1]).find((h) => h !== undefined);

describe('vmmkit run --incoming and vmmkit migrate, in two processes', () => {
  beforeAll(() => {
    // Bring dist up to date with the sources under test.
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-b', examples], { stdio: 'inherit' });
  }, 120_000);

  afterAll(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('both exit 0 and print the same guest RAM hash', async () => {
    const destination = vmmkit(['run', ...VM, '--incoming', 'tcp:127.0.0.1:0', '--duration', '0.2']);
    // Port 0: the destination picks a free port and says which.
    const listening = await destination.line(/^listening for a migration on tcp:127\.0\.0\.1:\d+$/);
    const uri = listening.split(' ').pop()!;
    const source = vmmkit(['migrate', uri, ...VM, '--downtime-limit', '300', '--max-iterations', '10']);
    const [sourceStatus, destinationStatus] = await Promise.all([source.exited, destination.exited]);
    const all = `source:\n${[...source.out, ...source.err].join('\n')}\ndestination:\n${[...destination.out, ...destination.err].join('\n')}`;
    expect([sourceStatus, destinationStatus], all).toEqual([0, 0]);
    expect([source.err, destination.err], all).toEqual([[], []]);

    expect(source.out).toContain(`migrating to ${uri}`);
    expect(source.out.some((l) => /^ {2}iteration 1: \d+ dirty pages, sent \d+ pages \+ \d+ zero, /.test(l)), all).toBe(true);
    expect(source.out.some((l) => l.startsWith('  switchover: ')), all).toBe(true);
    expect(source.out.some((l) => /^migration completed in .*: \d+ iterations? \((converged|did not converge)\)$/.test(l)), all).toBe(true);
    expect(source.out.filter((l) => /^ {2}container .*: device dirty tracking, \d+ dirty pages/.test(l)), all).toHaveLength(2);
    expect(destination.out.some((l) => /^migration received: \d+ pages, \d+ zero pages, /.test(l)), all).toBe(true);
    expect(destination.out.at(-1)).toBe('duration elapsed: stopping');

    const sourceHash = hashOf(source.out);
    expect(sourceHash, all).toMatch(/^[0-9a-f]{64}$/);
    expect(hashOf(destination.out), all).toBe(sourceHash);
  }, 30_000);

  it('migrates over RAM channels beside the main connection, with checksums (--channels, --integrity)', async () => {
    const destination = vmmkit(['run', ...VM, '--incoming', 'tcp:127.0.0.1:0', '--duration', '0.2']);
    const listening = await destination.line(/^listening for a migration on tcp:127\.0\.0\.1:\d+$/);
    const uri = listening.split(' ').pop()!;
    const source = vmmkit(['migrate', uri, ...VM, '--max-iterations', '3', '--channels', '3', '--integrity']);
    const [sourceStatus, destinationStatus] = await Promise.all([source.exited, destination.exited]);
    const all = `source:\n${[...source.out, ...source.err].join('\n')}\ndestination:\n${[...destination.out, ...destination.err].join('\n')}`;
    expect([sourceStatus, destinationStatus], all).toEqual([0, 0]);
    expect(source.out).toContain(`migrating to ${uri} with 3 RAM channel(s)`);
    expect(hashOf(destination.out), all).toBe(hashOf(source.out));
  }, 30_000);

  it.skipIf(process.platform !== 'linux')('migrates a VM whose nic another process serves over vfio-user (four processes: two `vmmkit serve`, run --incoming, migrate)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmkit-cli-vfio-user-'));
    try {
      const servers = ['source', 'destination'].map((side) => {
        const path = join(dir, `${side}.sock`);
        return { path, process: vmmkit(['serve', '--device', 'nic', '--socket', path]) };
      });
      for (const s of servers) await s.process.line(/^serving nic \(1234:4e49\) on /);
      const vm = (path: string): string[] => ['-m', '64M', '-name', 'migrating', '-device', `vfio-user-pci,socket=${path},id=nic0`];
      const destination = vmmkit(['run', ...vm(servers[1]!.path), '--incoming', 'tcp:127.0.0.1:0', '--duration', '0.2']);
      const uri = (await destination.line(/^listening for a migration on tcp:127\.0\.0\.1:\d+$/)).split(' ').pop()!;
      const source = vmmkit(['migrate', uri, ...vm(servers[0]!.path), '--max-iterations', '3']);
      const [sourceStatus, destinationStatus] = await Promise.all([source.exited, destination.exited]);
      const all = `source:\n${[...source.out, ...source.err].join('\n')}\ndestination:\n${[...destination.out, ...destination.err].join('\n')}`;
      expect([sourceStatus, destinationStatus], all).toEqual([0, 0]);
      // The nic's state went over MIG_DATA from one server to the other, its DMA tracked by DMA logging.
      const moved = /^ {2}RAM: .*; device state ([\d.]+) KiB;/.exec(source.out.find((l) => l.startsWith('  RAM: ')) ?? '');
      expect(Number(moved?.[1]), all).toBeGreaterThan(0);
      expect(source.out.filter((l) => l.includes('(vfio-iommu-user): device dirty tracking') && l.includes(`[vfio-user:${servers[0]!.path}]`)), all).toHaveLength(2);
      expect(hashOf(destination.out), all).toBe(hashOf(source.out));
      for (const s of servers) {
        s.process.child.kill('SIGTERM');
        await s.process.exited;
        // Each server had its one client, which left when its VMM exited.
        expect(s.process.err.filter((l) => /client (connected|left)/.test(l)), s.process.err.join('\n')).toHaveLength(2);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
