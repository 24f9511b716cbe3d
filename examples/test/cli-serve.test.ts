// `vmmkit serve`: its arguments, and a served edu and nic answering a vfio-user client over the
// socket until the command is interrupted, after which the socket path is gone.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_CAPABILITIES, SocketTransport, VFIO_USER_DEVICE_FEATURE, VFIO_USER_REGION_READ, VFIO_USER_VERSION,
  decodeRegionReadReply, encodeFeature, encodeMessage, encodeRegionAccess, encodeVersion, isErrorReply, type VfioUserMessage,
} from '@vmmkit/core/vfio-user';
import { VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION } from '@vmmkit/core/uapi';
import { parseCommandLine } from '../src/cli/args/command-line.js';
import { UsageError } from '../src/cli/args/usage-error.js';
import { runCli } from '../src/cli/cli.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../src/cli/exit-codes.js';
import { testIo } from './cli-test-io.js';

/** Send commands one after another over a socket and collect the replies. */
async function exchange(path: string, commands: readonly [number, Uint8Array][]): Promise<VfioUserMessage[]> {
  const transport = SocketTransport.connect(path);
  const replies: VfioUserMessage[] = [];
  await new Promise<void>((resolve, reject) => {
    transport.start({
      message: (m) => {
        replies.push(m);
        if (replies.length === commands.length) transport.close();
      },
      closed: (e) => (e ? reject(e) : resolve()),
    });
    commands.forEach(([command, payload], i) => transport.send(encodeMessage({ msgId: i, command, flags: 0, error: 0 }, payload)));
  });
  return replies;
}

const version = (): [number, Uint8Array] => [VFIO_USER_VERSION, encodeVersion({ major: 0, minor: 0, capabilities: DEFAULT_CAPABILITIES })];

describe('vmmkit serve', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('parses --device and --socket and refuses what it cannot serve', () => {
    expect(parseCommandLine(['serve', '--device', 'nic', '--socket', '/tmp/n.sock'])).toEqual({ command: 'serve', device: 'nic', socket: '/tmp/n.sock' });
    expect(parseCommandLine(['serve', '-device=edu', '-socket=/tmp/e'])).toEqual({ command: 'serve', device: 'edu', socket: '/tmp/e' });
    const usage = (argv: string[]): string => {
      try {
        parseCommandLine(argv);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(usage(['serve', '--socket', '/tmp/x'])).toMatch(/missing --device/);
    expect(usage(['serve', '--device', 'edu'])).toMatch(/missing --socket/);
    expect(usage(['serve', '--device', 'mtty', '--socket', '/tmp/x'])).toMatch(/--device 'mtty' is not a model vmmkit serves \(edu, nic\)/);
    expect(usage(['serve', '--device', 'edu', '--socket', `/tmp/${'x'.repeat(120)}`])).toMatch(/1 to 107 bytes/);
    expect(usage(['serve', '--device', 'edu', '--socket', '/tmp/x', 'extra'])).toMatch(/unexpected argument 'extra'/);
  });

  it('exits 2 on bad usage', async () => {
    const t = testIo();
    expect(await runCli(['serve', '--device', 'edu'], t.io)).toBe(EXIT_USAGE);
    expect(t.err[0]).toMatch(/missing --socket/);
  });

  it('serves edu until interrupted, then removes its socket', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-serve-'));
    const path = join(dir, 'edu.sock');
    const t = testIo();
    const status = runCli(['serve', '--device', 'edu', '--socket', path], t.io);
    expect(await t.waitForLine(/^serving/)).toBe(`serving edu (1234:11e8) on ${path}`);
    const replies = await exchange(path, [version(), [VFIO_USER_REGION_READ, encodeRegionAccess({ offset: 0n, region: 0, count: 4 })]]);
    const id = decodeRegionReadReply(replies[1]!.payload, 4);
    expect(new DataView(id.buffer, id.byteOffset).getUint32(0, true)).toBe(0x010000ed);
    t.interrupt('SIGTERM');
    expect(await status).toBe(EXIT_OK);
    expect(t.out.at(-1)).toBe(`stopped on SIGTERM; removed ${path}`);
    expect(existsSync(path)).toBe(false);
    expect(t.err.some((l) => /client left after 2 commands/.test(l))).toBe(true);
  });

  it('serves nic with migration, and fails with the path named when the path is taken', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-serve-'));
    const path = join(dir, 'nic.sock');
    const t = testIo();
    const status = runCli(['serve', '--device', 'nic', '--socket', path], t.io);
    await t.waitForLine(/^serving nic \(1234:4e49\)/);
    const replies = await exchange(path, [version(), [VFIO_USER_DEVICE_FEATURE, encodeFeature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(0), 16)]]);
    expect(isErrorReply(replies[1]!.header)).toBe(false);
    expect(new DataView(replies[1]!.payload.buffer, replies[1]!.payload.byteOffset).getBigUint64(8, true)).toBe(5n);
    t.interrupt();
    expect(await status).toBe(EXIT_OK);
    // A path that exists already (a file, a stale socket) is refused with the path and errno.
    const taken = join(dir, 'taken');
    writeFileSync(taken, '');
    const u = testIo();
    expect(await runCli(['serve', '--device', 'edu', '--socket', taken], u.io)).toBe(EXIT_FAILURE);
    expect(u.err[0]).toContain(taken);
    expect(u.err[0], u.err[0]).toMatch(/EADDRINUSE/);
  });
});
