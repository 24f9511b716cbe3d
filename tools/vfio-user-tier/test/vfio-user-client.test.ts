// QEMU 11.1's vfio-user client as the tier reaches it, before any server exists: QEMU (chrooted)
// connects to a socket the host listens on in the run folder, and its first message is VERSION
// as docs/interop/vfio-user.rst defines it. A server that hangs up instead of answering makes
// QEMU refuse the device (after its 5 s reply timeout), and the launcher reports that in QEMU's
// words.

import { createServer, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { preparedQemuVersion } from '../support/paths.js';
import { QemuPeerError } from '../support/peer-error.js';
import { QemuPeer } from '../support/qemu-peer.js';
import { RunDir } from '../support/run-dir.js';
import { vfioUserDevice } from './vfio-user-device.js';

const version = preparedQemuVersion();
const reason = version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)';
if (reason) console.warn(`[vfio-user tier] vfio-user client checks skipped: ${reason}`);

const HEADER = 16;
const VFIO_USER_VERSION = 1;

/** The first whole message a connection brings. */
function firstMessage(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= HEADER && data.length >= data.readUInt32LE(4)) resolve(data.subarray(0, data.readUInt32LE(4)));
    });
    socket.once('close', () => reject(new Error('closed before a whole message')));
  });
}

describe.skipIf(reason !== undefined)(`QEMU's vfio-user client (${version ?? reason})`, () => {
  let runDir: RunDir;
  beforeEach(() => {
    runDir = RunDir.create();
  });
  afterEach(() => {
    runDir.remove();
  });

  it('connects through the run folder and opens with VERSION 0.0 and its capabilities; a server that hangs up is refused', async () => {
    const server = createServer();
    const connected = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve) => server.listen(runDir.hostSocket('dev.sock'), resolve));
    try {
      const starting = QemuPeer.start({ runDir, devices: [vfioUserDevice(runDir.rootSocket('dev.sock'), 'dev0')] }).catch((e: unknown) => e);
      const socket = await connected;
      const message = await firstMessage(socket);
      expect(message.readUInt16LE(2)).toBe(VFIO_USER_VERSION);
      expect(message.readUInt32LE(8) & 0xf).toBe(0); // a command, not a reply
      expect([message.readUInt16LE(HEADER), message.readUInt16LE(HEADER + 2)]).toEqual([0, 0]);
      const json = message.subarray(HEADER + 4, message.indexOf(0, HEADER + 4)).toString('utf8');
      const caps = (JSON.parse(json) as { capabilities: Record<string, unknown> }).capabilities;
      expect(caps).toMatchObject({ max_msg_fds: 16, max_data_xfer_size: 1 << 20, pgsizes: 4096 });
      socket.destroy();
      const failure = await starting;
      expect(failure).toBeInstanceOf(QemuPeerError);
      // QEMU 11.1 notices the hang-up ("failed to read header: EOF") but still waits out its
      // 5 s reply timeout before it refuses the device.
      expect((failure as Error).message).toMatch(/vfio-user-pci.*failed to read header: EOF/);
      expect((failure as Error).message).toMatch(/timed out waiting for reply/);
    } finally {
      server.close();
    }
  });
});
