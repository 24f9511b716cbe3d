// One vmmkit server, several QEMUs in turn: the server outlives a client that quits and one that
// is killed, and serves the next one a device in power-on state, as a device process serving a
// VMM that restarts must.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceServer, serverMissingReason } from '../support/device-server.js';
import { EduGuest, EDU_DEVICE, EDU_ID_VALUE, EDU_VENDOR } from '../support/edu-guest.js';
import { preparedQemuVersion } from '../support/paths.js';
import { findFunction, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../support/pci-guest.js';
import { QemuPeer } from '../support/qemu-peer.js';
import { RunDir } from '../support/run-dir.js';
import { vfioUserDevice } from './vfio-user-device.js';

const version = preparedQemuVersion();
const reason = serverMissingReason() ?? (version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)');
if (reason) console.warn(`[vfio-user tier] server sessions skipped: ${reason}`);

describe.skipIf(reason !== undefined)(`one served edu, one QEMU after another (${version ?? reason})`, () => {
  let runDir: RunDir;
  let server: DeviceServer;

  beforeAll(async () => {
    runDir = RunDir.create();
    try {
      server = await DeviceServer.start('edu', runDir.hostSocket('edu.sock'));
    } catch (e) {
      runDir.remove();
      throw e;
    }
  });

  afterAll(async () => {
    try {
      await server?.stop();
    } finally {
      runDir?.remove();
    }
  });

  /** Starts a QEMU on the server, brings edu up as a guest would, and hands it to `use`. */
  async function session(use: (edu: EduGuest, peer: QemuPeer) => Promise<void>, end: (peer: QemuPeer) => Promise<void>): Promise<void> {
    const peer = await QemuPeer.start({ runDir, devices: [vfioUserDevice(runDir.rootSocket('edu.sock'))] });
    try {
      const pci = await findFunction(peer.qtest, EDU_VENDOR, EDU_DEVICE);
      const [bar0] = await pci.assignBars();
      await pci.enable(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      await use(new EduGuest(peer.qtest, pci, bar0!.address!), peer);
    } finally {
      await end(peer);
      await peer.stop();
    }
  }

  it('serves a second QEMU after the first quit, with the device back in power-on state', async () => {
    await session(async (edu) => {
      expect(await edu.liveness(0x5555_aaaa)).toBe(0xaaaa_5555);
    }, async (peer) => { await peer.qmp.execute('quit').catch(() => undefined); });
    await session(async (edu) => {
      expect(await edu.id()).toBe(EDU_ID_VALUE);
      expect(await edu.qtest.readl(edu.bar0 + 4n)).toBe(0);
    }, async () => undefined);
    expect(server.running, server.output).toBe(true);
  });

  it('serves the next QEMU after one was killed mid-session', async () => {
    await session(async (edu) => {
      await edu.raise(0x1);
      expect(await edu.irqStatus()).toBe(0x1);
    }, async (peer) => {
      process.kill(peer.launcherPid, 'SIGKILL');
      await peer.exited;
    });
    await session(async (edu) => {
      expect(await edu.irqStatus()).toBe(0);
      const data = new Uint8Array(64).map((_, i) => i ^ 0x5a);
      await edu.qtest.write(0x10_0000n, data);
      await edu.copyFromRam(0x10_0000n, 64);
      await edu.qtest.memset(0x20_0000n, 64, 0);
      await edu.copyToRam(0x20_0000n, 64);
      expect(await edu.qtest.read(0x20_0000n, 64)).toEqual(data);
    }, async () => undefined);
    expect(server.running, server.output).toBe(true);
  });
});
