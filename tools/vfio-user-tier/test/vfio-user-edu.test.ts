// vmmkit's edu model served over vfio-user (`vmmkit serve --device edu`) to QEMU 11.1's
// vfio-user-pci client: the same checks QEMU's own edu passes (qemu-edu.test.ts), with the
// device in another process and QEMU reaching it only through the socket.

import { describe, expect, it } from 'vitest';
import { DeviceServer, serverMissingReason } from '../support/device-server.js';
import { preparedQemuVersion } from '../support/paths.js';
import { QemuPeer } from '../support/qemu-peer.js';
import { eduChecks } from './edu-checks.js';
import { vfioUserDevice } from './vfio-user-device.js';

const version = preparedQemuVersion();
const reason = serverMissingReason() ?? (version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)');
if (reason) console.warn(`[vfio-user tier] vmmkit's served edu skipped: ${reason}`);

describe.skipIf(reason !== undefined)(`vmmkit's edu over vfio-user to QEMU (${version ?? reason})`, () => {
  let server: DeviceServer | undefined;
  eduChecks({
    start: async (runDir) => {
      server = await DeviceServer.start('edu', runDir.hostSocket('edu.sock'));
      try {
        const peer = await QemuPeer.start({ runDir, devices: [vfioUserDevice(runDir.rootSocket('edu.sock'))] });
        return {
          peer,
          stop: async () => {
            try {
              await peer.stop();
            } finally {
              await server!.stop();
            }
          },
        };
      } catch (e) {
        await server.stop();
        throw new Error(`${(e as Error).message}; the server said: ${server.output.trim() || '(nothing)'}`, { cause: e });
      }
    },
    registersOnReset: 'cleared',
  });

  it('the server outlived the whole session (no crash behind a passing check)', () => {
    expect(server?.running, server?.output).toBe(true);
  });
});
