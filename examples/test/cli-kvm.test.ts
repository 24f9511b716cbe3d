// `vmmkit run --kvm` and `vmmkit migrate --kvm`: a guest on this machine's KVM, run in process,
// and migrated between two vmmkit processes, both printing the same guest RAM hash (skipped,
// saying why, without /dev/kvm).

import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../src/cli/args/command-line.js';
import { runCli } from '../src/cli/cli.js';
import { EXIT_OK, EXIT_USAGE } from '../src/cli/exit-codes.js';
import { testIo } from './cli-test-io.js';

const kvmMissing = (() => {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch (e) {
    return `/dev/kvm is not usable here (${(e as NodeJS.ErrnoException).code}): the --kvm tests are skipped`;
  }
})();
if (kvmMissing) console.log(kvmMissing);

describe('vmmkit --kvm usage', () => {
  it('parses --kvm among the VM options of run and migrate', () => {
    expect(parseCommandLine(['run', '--kvm', '-m', '8M'])).toMatchObject({ vm: { kvm: true, sim: false, ramSize: 8n << 20n } });
    expect(parseCommandLine(['migrate', 'unix:/tmp/x', '-kvm'])).toMatchObject({ vm: { kvm: true } });
  });

  it('refuses --kvm with --sim, and too little RAM for the guest, as bad usage', async () => {
    const t = testIo();
    expect(await runCli(['run', '--kvm', '--sim'], t.io)).toBe(EXIT_USAGE);
    expect(t.err[0]).toMatch(/--kvm runs guest code in this machine's memory/);
  });
});

describe.skipIf(kvmMissing)('vmmkit run --kvm', () => {
  it('runs the pages guest on a vCPU for --duration and exits 0', async () => {
    const t = testIo();
    expect(await runCli(['run', '--kvm', '-m', '16M', '--duration', '0.3'], t.io)).toBe(EXIT_OK);
    expect(t.err).toEqual([]);
    expect(t.out.find((l) => l.startsWith('kvm0 '))?.split(/\s+/).slice(0, 2)).toEqual(['kvm0', 'kvm']);
    expect(t.out.slice(-2)).toEqual(['running for 0.3 s (the guest is at work)', 'duration elapsed: stopping']);
  });

  it('refuses guest RAM too small for the guest', async () => {
    const t = testIo();
    expect(await runCli(['run', '--kvm', '-m', '1M', '--duration', '0'], t.io)).toBe(EXIT_USAGE);
    expect(t.err[0]).toMatch(/--kvm needs at least 2 MiB/);
  });
});

describe.skipIf(kvmMissing)('vmmkit run --kvm --incoming and vmmkit migrate --kvm, in two processes', () => {
  const examples = join(dirname(fileURLToPath(import.meta.url)), '..');
  const bin = join(examples, 'dist', 'cli', 'main.js');
  beforeAll(() => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-b', examples], { stdio: 'inherit' });
  }, 120_000);

  const vmmkit = (args: string[]) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: examples, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    return { exited, out: () => out.split('\n'), err: () => err };
  };
  const hashOf = (lines: readonly string[]) => lines.map((l) => /^guest RAM sha256 ([0-9a-f]{64})$/.exec(l)?.[1]).find((h) => h);

  it('both exit 0 and print the same guest RAM hash', async () => {
    const uri = `unix:${join(tmpdir(), `vmmkit-cli-kvm-${process.pid}.sock`)}`;
    const destination = vmmkit(['run', '--kvm', '-m', '16M', '--incoming', uri, '--duration', '0.3']);
    // The destination listens within moments; the source's connect waits for it briefly.
    await new Promise((r) => setTimeout(r, 1500));
    const source = vmmkit(['migrate', uri, '--kvm', '-m', '16M', '--max-iterations', '3']);
    const [s, d] = await Promise.all([source.exited, destination.exited]);
    const all = `source:\n${source.out().join('\n')}${source.err()}\ndestination:\n${destination.out().join('\n')}${destination.err()}`;
    expect([s, d], all).toEqual([0, 0]);
    const hash = hashOf(source.out());
    expect(hash, all).toMatch(/^[0-9a-f]{64}$/);
    expect(hashOf(destination.out()), all).toBe(hash);
  }, 60_000);
});
