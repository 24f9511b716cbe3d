// `vmmkit caps`: on the simulated demo machine (every backend, three devices with known facts) and
// on this machine's own kernel, whatever VFIO it has or lacks.

import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { HostCaps } from '../src/cli/caps/host-caps.js';
import { runCli } from '../src/cli/cli.js';
import { EXIT_OK } from '../src/cli/exit-codes.js';
import { testIo } from './cli-test-io.js';

async function caps(argv: string[]): Promise<{ status: number; out: string[]; err: string[] }> {
  const t = testIo();
  const status = await runCli(['caps', ...argv], t.io);
  return { status, out: t.out, err: t.err };
}

describe('vmmkit caps --sim --json', () => {
  it('reports the demo machine: nodes, every backend usable, no KVM, and each device as vmmkit realizes it', async () => {
    const { status, out, err } = await caps(['--sim', '--json']);
    expect([status, err]).toEqual([EXIT_OK, []]);
    const report = JSON.parse(out.join('\n')) as HostCaps;
    expect(report.host).toBe('sim');
    expect(report.nodes).toEqual([
      { path: '/dev/iommu', present: true, openable: true },
      { path: '/dev/vfio/vfio', present: true, openable: true },
    ]);
    expect(report.backends.map((b) => [b.id, b.usable, b.apiVersion, b.type1, b.type1v2])).toEqual([
      ['legacy-type1', true, 0, true, true],
      ['iommufd', true, undefined, undefined, undefined],
      ['iommufd-vfio-compat', true, 0, true, true],
    ]);
    expect(report.kvm).toEqual({ path: '/dev/kvm', present: false, openable: false, usable: false });
    const nic = { probedWith: 'vfio-iommu-iommufd', iommuDirtyTracking: true, iommuHwCaps: '0x1', migrationFlags: ['STOP_COPY', 'P2P', 'PRE_COPY'], deviceDirtyTracking: true };
    expect(report.devices).toEqual([
      {
        name: '0000:00:03.0', bdf: '0000:00:03.0', cdev: '/dev/vfio/devices/vfio0', iommuGroup: 3,
        probedWith: 'vfio-iommu-iommufd', iommuDirtyTracking: true, iommuHwCaps: '0x1', migrationFlags: [], deviceDirtyTracking: false,
      },
      { name: '0000:00:05.0', bdf: '0000:00:05.0', cdev: '/dev/vfio/devices/vfio1', iommuGroup: 5, ...nic },
      { name: '0000:00:06.0', bdf: '0000:00:06.0', cdev: '/dev/vfio/devices/vfio2', iommuGroup: 6, ...nic },
    ]);
  });

  it('prints the same facts as a table without --json', async () => {
    const { status, out } = await caps(['--sim']);
    expect(status).toBe(EXIT_OK);
    expect(out).toContain('  /dev/kvm        absent');
    expect(out.find((l) => l.includes('0000:00:05.0'))?.split(/\s+/).filter(Boolean)).toEqual([
      '0000:00:05.0', '5', '/dev/vfio/devices/vfio1', 'vfio-iommu-iommufd', 'yes', 'STOP_COPY,P2P,PRE_COPY', 'yes',
    ]);
  });
});

describe('vmmkit caps on this machine (LinuxHost)', () => {
  // This machine has /dev/kvm but no /dev/iommu and no /dev/vfio: caps must say so and succeed.
  // Checked against the file system, so that the test tells the truth on a host with VFIO too.
  it('says which VFIO nodes are absent, which backends that leaves, and exits 0', async () => {
    const { status, out, err } = await caps(['--json']);
    expect([status, err]).toEqual([EXIT_OK, []]);
    const report = JSON.parse(out.join('\n')) as HostCaps;
    expect(report.host).toBe('linux');
    for (const path of ['/dev/iommu', '/dev/vfio/vfio']) {
      expect(report.nodes.find((n) => n.path === path)?.present).toBe(existsSync(path));
    }
    if (!existsSync('/dev/iommu')) {
      expect(report.backends.find((b) => b.id === 'iommufd')).toEqual({ id: 'iommufd', path: '/dev/iommu', usable: false, detail: '/dev/iommu is absent' });
    }
    if (!existsSync('/dev/vfio/vfio')) expect(report.backends.find((b) => b.id === 'legacy-type1')?.usable).toBe(false);
    expect(report.kvm.present).toBe(existsSync('/dev/kvm'));
    if (report.kvm.openable) expect(report.kvm.apiVersion).toBe(12);
  });

  it('prints it plainly', async () => {
    const { status, out } = await caps([]);
    expect(status).toBe(EXIT_OK);
    expect(out).toContain('host: this machine (Linux)');
    if (!existsSync('/dev/iommu')) expect(out).toContain('  /dev/iommu      absent');
    if (!existsSync('/dev/vfio/vfio')) expect(out).toContain('  /dev/vfio/vfio  absent');
    if (!existsSync('/dev/vfio')) {
      expect(out).toContain('VFIO devices: none (no PCI function is bound to vfio-pci and /dev/vfio/devices has no cdev)');
    }
  });
});
