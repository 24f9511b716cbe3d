// The harness proven on QEMU's own emulated edu (`-device edu`): the same checks the vfio-user
// suite makes of vmmkit's served edu pass against the device the register map comes from.

import { describe } from 'vitest';
import { preparedQemuVersion } from '../support/paths.js';
import { QemuPeer } from '../support/qemu-peer.js';
import { eduChecks } from './edu-checks.js';

const version = preparedQemuVersion();
const reason = version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)';
if (reason) console.warn(`[vfio-user tier] skipped: ${reason}`);

describe.skipIf(reason !== undefined)(`QEMU's emulated edu (${version ?? reason})`, () => {
  eduChecks({
    start: async (runDir) => ({ peer: await QemuPeer.start({ runDir, devices: ['edu'] }) }),
    registersOnReset: 'kept',
  });
});
