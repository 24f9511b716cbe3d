// The tour in examples/src/tour runs as its comments say: a composed VMM that releases
// everything, backends chosen per device, a migration between two roles, and a real host that
// says plainly what it lacks.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { LinuxHost } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { simMachine } from '@vmmkit/sim/testing';
import { main as composeAVmm } from '../src/tour/01-compose-a-vmm.js';
import { main as backendPerDevice } from '../src/tour/02-backend-per-device.js';
import { main as migrateTwoRoles } from '../src/tour/04-migrate-two-processes.js';
import { main as realLinuxHost } from '../src/tour/05-real-linux-host.js';

describe('the tour', () => {
  vi.spyOn(console, 'log').mockImplementation(() => {});

  it('1: composes a VMM, traces it with events, and closes it with nothing left open', async () => {
    const lines = await composeAVmm();
    expect(lines).toContain('migration would track legacy-container-0 by device: every device logs its own DMA');
    expect(lines.some((l) => l.startsWith('HWPT') && l.endsWith('(dirty tracking: true)'))).toBe(true);
    expect(lines.at(-1)).toBe('closed: 0 fds open');
  });

  it('2: puts each device in the backend it asked for', async () => {
    expect(await backendPerDevice()).toEqual({
      legacy: expect.stringMatching(/^vfio-iommu-legacy /),
      iommufd: expect.stringMatching(/^vfio-iommu-iommufd /),
      'third-party': expect.stringMatching(/^vfio-iommu-ioas /),
    });
  });

  it('4: migrates from the source role to the destination role, and their RAM hashes agree', async () => {
    const uri = `unix:${join(tmpdir(), `vmmkit-tour-test-${process.pid}.sock`)}`;
    const destination = migrateTwoRoles(['destination', uri]);
    const source = migrateTwoRoles(['source', uri]);
    const [d, s] = (await Promise.all([destination, source])) as { ramSha256: string }[];
    expect(d!.ramSha256).toBe(s!.ramSha256);
  });

  it('5: on a host without VFIO, says what is missing; with a bound device, realizes it', async () => {
    await expect(realLinuxHost([], new LinuxHost())).rejects.toThrow(/neither \/dev\/iommu .* nor \/dev\/vfio\/vfio .* exists|no device given/);
    const lines = await realLinuxHost(['0000:00:05.0'], new SimHost(simMachine()));
    expect(lines[0]).toMatch(/^0000:00:05.0: vendor 0x1234 device 0x4e49, through vfio-iommu-iommufd$/);
    expect(lines.some((l) => /^migration would track iommufd-ioas-\d+-\d+ by device$/.test(l))).toBe(true);
  });
});
