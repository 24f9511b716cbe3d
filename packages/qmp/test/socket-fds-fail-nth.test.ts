// Fault injection under the descriptors passed over the real socket, on a simulated VM: every host
// call a client's fd session makes (object-add iommufd with and without fd=NAME, getfd's adoption, device_add fd=NAME,
// closefd, add-fd / remove-fd, a command that does not take its fd, object-del) fails in turn; the
// session answers, and once the client and the server are gone no real fd, simulated fd or
// adopted file is left.

import { closeSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { UnixStream, Vmm } from '@vmmkit/core';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin } from '@vmmkit/device-vfio-pci';
import { SimHost, simMachine } from '@vmmkit/sim';
import { QmpServer } from '../src/index.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** The client's commands, each with the fds it sends. */
const SESSION: [string, Record<string, unknown>, number][] = [
  ['object-add', { 'qom-type': 'iommufd', id: 'iommufd0' }, 0],
  ['getfd', { fdname: 'io' }, 1],
  // Refused (the descriptor is /dev/null, not /dev/iommu): the name stays the client's.
  ['object-add', { 'qom-type': 'iommufd', id: 'iommufd1', fd: 'io' }, 0],
  ['getfd', { fdname: 'dev' }, 1],
  ['device_add', { driver: 'vfio-pci', id: 'nic0', fd: 'dev', iommufd: 'iommufd0' }, 0],
  ['closefd', { fdname: 'dev' }, 0],
  ['add-fd', { opaque: 'x' }, 1],
  ['remove-fd', { 'fdset-id': 0 }, 0],
  ['query-status', {}, 1],
  ['getfd', { fdname: 'kept' }, 1],
  ['object-del', { id: 'iommufd0' }, 0],
];

/** Run the session with `fault` armed after negotiation; returns the host calls it made. */
async function session(dir: string, fault: number | undefined): Promise<{ calls: number; host: SimHost }> {
  const host = new SimHost(simMachine());
  const vmm = await Vmm.create({ host, plugins: [iommufdPlugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 1n << 20n }], name: 'fail-nth' });
  const server = new QmpServer(vmm);
  const path = join(dir, `qmp-${fault ?? 0}.sock`);
  await server.listen(path);
  const devNull = openSync('/dev/null', 'r');
  const stream = UnixStream.connect(path);
  let text = '';
  let lines = 0;
  let closed = false;
  let wake = (): void => undefined;
  stream.start({
    data: (bytes) => {
      text += Buffer.from(bytes).toString();
      lines = text.split('\r\n').length - 1;
      wake();
    },
    closed: () => {
      closed = true;
      wake();
    },
  });
  const answered = async (n: number): Promise<void> => {
    while (lines < n && !closed) await new Promise<void>((r) => (wake = r));
  };
  const send = async (execute: string, args: Record<string, unknown>, fds: number): Promise<void> => {
    stream.send(Buffer.from(JSON.stringify({ execute, arguments: args })), Array(fds).fill(devNull));
    await answered(lines + 1);
  };
  await answered(1);
  await send('qmp_capabilities', {}, 0);
  const start = host.callCount('any');
  if (fault !== undefined) host.injectFault({ syscall: 'any', errno: 'EIO', nth: fault });
  for (const [name, args, fds] of SESSION) await send(name, args, fds);
  const calls = host.callCount('any') - start;
  expect(closed).toBe(false);
  stream.close();
  closeSync(devNull);
  await new Promise((r) => setTimeout(r, 10));
  await server.close();
  await vmm.close();
  return { calls, host };
}

it('leaves no descriptor behind whichever host call of a client\'s fd session fails', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmkit-qmp-fail-nth-'));
  try {
    const before = openFds();
    const { calls } = await session(dir, undefined);
    expect(calls).toBeGreaterThanOrEqual(4);
    expect(openFds()).toBe(before);
    for (let nth = 1; nth <= calls; nth++) {
      const { host } = await session(dir, nth);
      expect({ nth, fds: openFds(), sim: host.census() }).toEqual({ nth, fds: before, sim: { fds: 0, objects: {} } });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
