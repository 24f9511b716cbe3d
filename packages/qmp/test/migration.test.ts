// Migration over QMP between two VMMs in this process, joined by a Unix socket: the parameters
// and capabilities, migrate / migrate-incoming with uri and channels, query-migrate while it runs
// and after, the MIGRATION, MIGRATION_PASS and VFIO_MIGRATION events, migrate_cancel, a
// migration the destination refuses, and the errors of commands that cannot run.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SimHost, simMachine } from '@vmmkit/sim';
import { EDU, NIC_A } from '@vmmkit/sim/testing';
import type { Vmm } from '@vmmkit/core';
import { QmpServer } from '../src/index.js';
import { TestClient, testVm } from './qmp-test-client.js';

interface Side {
  host: SimHost;
  vmm: Vmm;
  server: QmpServer;
  c: TestClient;
}

let dir: string;
let src: Side;
let dst: Side;
let incomingFailures: unknown[];

async function side(incoming: boolean): Promise<Side> {
  const host = new SimHost(simMachine());
  const vmm = await testVm(host, { incoming });
  const server = new QmpServer(vmm, { incoming: incoming ? 'defer' : undefined, onIncomingFailed: (e) => incomingFailures.push(e) });
  return { host, vmm, server, c: await TestClient.negotiated(server) };
}

async function addNic(s: Side, extra: Record<string, unknown> = {}): Promise<void> {
  await s.c.ok('object-add', { 'qom-type': 'iommufd', id: 'iommufd0' });
  await s.c.ok('device_add', { driver: 'vfio-pci', id: 'nic0', host: NIC_A, iommufd: 'iommufd0', ...extra });
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmkit-qmp-'));
  incomingFailures = [];
  src = await side(false);
  dst = await side(true);
  await src.c.ok('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
  await dst.c.ok('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
});
afterEach(async () => {
  for (const s of [src, dst]) {
    await s.server.close();
    await s.vmm.close();
    expect(s.host.census().fds).toBe(0);
  }
  rmSync(dir, { recursive: true, force: true });
});

const statuses = (c: TestClient): string[] => c.events.filter((e) => e.event === 'MIGRATION').map((e) => e.data.status);

describe('a migration driven over QMP', () => {
  it('completes: the destination runs, the source is postmigrate, with the numbers and events QEMU gives', async () => {
    await addNic(src, { 'migration-events': true });
    await addNic(dst);
    const path = join(dir, 'mig.sock');
    await dst.c.ok('migrate-incoming', { channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path } }] });
    // The destination reports what QEMU's does: its status and where it listens, no numbers.
    expect(await dst.c.ok('query-migrate')).toEqual({ status: 'setup', 'socket-address': [{ type: 'unix', path }] });
    await src.c.ok('migrate-set-parameters', { 'downtime-limit': 500, 'max-bandwidth': 0 });
    expect(await src.c.ok('query-migrate-parameters')).toEqual({ 'downtime-limit': 500, 'max-bandwidth': 0 });
    expect(await src.c.ok('query-migrate')).toEqual({});

    await src.c.ok('migrate', { uri: `unix:${path}` });
    await src.c.event('MIGRATION', (d) => d.status === 'completed');
    await dst.c.event('MIGRATION', (d) => d.status === 'completed');

    // As QEMU 11.1: `device` while the stopped guest's devices go out, on the source only.
    expect(statuses(src.c)).toEqual(['setup', 'active', 'device', 'completed']);
    expect(statuses(dst.c)).toEqual(['setup', 'active', 'completed']);
    const passes = src.c.events.filter((e) => e.event === 'MIGRATION_PASS').map((e) => e.data.pass);
    // QEMU 11.1's first MIGRATION_PASS is 2: the log starting full is the first sync, unannounced.
    expect(passes[0]).toBe(2);
    expect(passes).toEqual(passes.map((_, i) => i + 2));
    const states = src.c.events.filter((e) => e.event === 'VFIO_MIGRATION').map((e) => e.data);
    expect(states[0]).toEqual({ 'device-id': 'nic0', 'qom-path': '/machine/peripheral/nic0', 'device-state': 'pre-copy' });
    expect(states.map((s) => s['device-state'])).toEqual(expect.arrayContaining(['stop-copy', 'stop']));
    // The destination's nic did not ask for migration events.
    expect(dst.c.events.filter((e) => e.event === 'VFIO_MIGRATION')).toEqual([]);

    const info = await src.c.ok('query-migrate');
    expect(info).toMatchObject({
      status: 'completed', 'total-time': expect.any(Number), 'setup-time': expect.any(Number), downtime: expect.any(Number),
      ram: { total: 8 << 20, remaining: 0, 'page-size': 4096, 'dirty-sync-count': passes.length + 1 },
      vfio: { transferred: expect.any(Number) },
    });
    expect(info.ram.transferred).toBeGreaterThan(0);
    expect(info.ram.normal + info.ram.duplicate).toBeGreaterThanOrEqual(2048);
    expect(info.vfio.transferred).toBeGreaterThan(0);
    expect(await dst.c.ok('query-migrate')).toEqual({ status: 'completed' });
    expect(await src.c.ok('query-status')).toEqual({ running: false, status: 'postmigrate' });
    expect(await dst.c.ok('query-status')).toEqual({ running: true, status: 'running' });
    expect(src.c.events.some((e) => e.event === 'STOP')).toBe(true);
    expect(dst.c.events.some((e) => e.event === 'RESUME')).toBe(true);
    expect(await src.c.err('cont')).toMatchObject({ class: 'GenericError' });
  });

  it('migrate_cancel stops it: cancelled, and the source runs on', async () => {
    const path = join(dir, 'mig.sock');
    await dst.c.ok('migrate-incoming', { uri: `unix:${path}`, 'exit-on-error': false });
    // 8 MiB at 1 MiB/s: seconds, time enough to cancel while it is active.
    await src.c.ok('migrate-set-parameters', { 'max-bandwidth': 1 << 20 });
    await src.c.ok('migrate', { uri: `unix:${path}` });
    await src.c.event('MIGRATION', (d) => d.status === 'active');
    expect(await src.c.ok('query-migrate')).toMatchObject({ status: 'active', 'expected-downtime': expect.any(Number), ram: { total: 8 << 20 } });
    expect(await src.c.err('migrate', { uri: `unix:${path}` })).toEqual({ class: 'GenericError', desc: "There's a migration process in progress" });
    // Hot-plug waits for the migration to end, as in QEMU.
    expect(await src.c.err('device_add', { driver: 'vfio-pci', host: NIC_A })).toMatchObject({ class: 'GenericError', desc: expect.stringContaining('migrat') });
    expect(await src.c.err('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: false }] })).toMatchObject({ desc: "There's a migration process in progress" });
    await src.c.ok('migrate_cancel');
    await src.c.event('MIGRATION', (d) => d.status === 'cancelled');
    expect(statuses(src.c)).toEqual(['setup', 'active', 'cancelling', 'cancelled']);
    expect(await src.c.ok('query-status')).toEqual({ running: true, status: 'running' });
    await dst.c.event('MIGRATION', (d) => d.status === 'failed');
    expect(await dst.c.ok('query-status')).toEqual({ running: false, status: 'inmigrate' });
    expect(incomingFailures).toEqual([]);
    expect(await src.c.ok('migrate_cancel')).toEqual({});
  }, 30_000);

  it('VFIO_MIGRATION of a device added without id has an empty device-id and its anonymous QOM path', async () => {
    for (const s of [src, dst]) {
      await s.c.ok('object-add', { 'qom-type': 'iommufd', id: 'iommufd0' });
      await s.c.ok('device_add', { driver: 'vfio-pci', host: NIC_A, iommufd: 'iommufd0', ...(s === src && { 'migration-events': true }) });
    }
    const path = join(dir, 'mig.sock');
    await dst.c.ok('migrate-incoming', { uri: `unix:${path}` });
    await src.c.ok('migrate', { uri: `unix:${path}` });
    await src.c.event('MIGRATION', (d) => d.status === 'completed');
    const states = src.c.events.filter((e) => e.event === 'VFIO_MIGRATION').map((e) => e.data);
    expect(states.length).toBeGreaterThan(0);
    for (const s of states) expect(s).toMatchObject({ 'device-id': '', 'qom-path': '/machine/peripheral-anon/device[0]' });
  });

  it('max-bandwidth set while it runs applies to it (QEMU applies it to the running migration)', async () => {
    // 8 MiB the stream cannot skip as zero pages: at 16 KiB/s, over eight minutes.
    src.vmm.memory.write(0n, new Uint8Array(8 << 20).map((_, i) => (i * 13 + 1) & 0xff));
    const path = join(dir, 'mig.sock');
    await dst.c.ok('migrate-incoming', { uri: `unix:${path}` });
    await src.c.ok('migrate-set-parameters', { 'max-bandwidth': 16 << 10 });
    await src.c.ok('migrate', { uri: `unix:${path}` });
    await src.c.event('MIGRATION', (d) => d.status === 'active');
    expect(await dst.c.ok('query-migrate')).toMatchObject({ status: 'active', 'socket-address': [{ type: 'unix', path }] });
    await src.c.ok('migrate-set-parameters', { 'max-bandwidth': 0 });
    await src.c.event('MIGRATION', (d) => d.status === 'completed');
    expect(await src.c.ok('query-migrate')).toMatchObject({ status: 'completed', ram: { transferred: expect.any(Number) } });
    expect((await src.c.ok('query-migrate')).ram.transferred).toBeGreaterThanOrEqual(8 << 20);
  }, 30_000);

  it('a destination that refuses (it lacks the device) fails the migration: the source runs again', async () => {
    await addNic(src);
    const path = join(dir, 'mig.sock');
    await dst.c.ok('migrate-incoming', { uri: `unix:${path}` });
    await src.c.ok('migrate', { uri: `unix:${path}` });
    await src.c.event('MIGRATION', (d) => d.status === 'failed');
    const info = await src.c.ok('query-migrate');
    expect(info).toMatchObject({ status: 'failed', 'error-desc': expect.stringContaining('migration failed') });
    expect(await src.c.ok('query-status')).toEqual({ running: true, status: 'running' });
    await dst.c.event('MIGRATION', (d) => d.status === 'failed');
    expect(await dst.c.ok('query-migrate')).toEqual({ status: 'failed', 'error-desc': expect.any(String) });
    // exit-on-error defaults to true: the embedding VMM is told (QEMU exits).
    expect(incomingFailures.length).toBe(1);
  });
});

describe('commands that cannot run', () => {
  it('migrate: its address, a blocked VM, a VM waiting for its own migration, a destination nobody listens on', async () => {
    expect(await src.c.err('migrate', {})).toEqual({ class: 'GenericError', desc: "need either 'uri' or 'channels' argument" });
    // QEMU 11.1 has no `detach` any more.
    expect(await src.c.err('migrate', { uri: 'unix:/x', detach: true })).toEqual({ class: 'GenericError', desc: "Parameter 'detach' is unexpected" });
    expect(await src.c.err('migrate', { uri: 'unix:/x', channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: '/x' } }] })).toMatchObject({ desc: expect.stringContaining('mutually exclusive') });
    // An empty channels list is no list (QEMU 11.1).
    expect(await src.c.err('migrate', { channels: [] })).toEqual({ class: 'GenericError', desc: "need either 'uri' or 'channels' argument" });
    expect(await src.c.err('migrate', { uri: 'exec:cat' })).toMatchObject({ desc: expect.stringMatching(/Parameter 'uri'.*exec:cat/) });
    expect(await src.c.err('migrate', { channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: '/x' } }] })).toMatchObject({ desc: expect.stringContaining("'file'") });
    expect(await src.c.err('migrate', { uri: 'tcp:127.0.0.1:0' })).toMatchObject({ desc: expect.stringContaining('port 0') });
    expect(await dst.c.err('migrate', { uri: 'unix:/x' })).toEqual({ class: 'GenericError', desc: 'Guest is waiting for an incoming migration' });
    await src.c.ok('device_add', { driver: 'vfio-pci', id: 'edu0', host: EDU });
    const blocked = await src.c.ok('query-migrate');
    expect(blocked['blocked-reasons'].length).toBeGreaterThan(0);
    expect(await src.c.err('migrate', { uri: `unix:${join(dir, 'none')}` })).toEqual({ class: 'GenericError', desc: blocked['blocked-reasons'].join('; ') });
    await src.c.ok('device_del', { id: 'edu0' });
    await src.c.ok('migrate', { uri: `unix:${join(dir, 'none')}` });
    await src.c.event('MIGRATION', (d) => d.status === 'failed');
    expect(await src.c.ok('query-migrate')).toMatchObject({ status: 'failed', 'error-desc': expect.stringContaining(join(dir, 'none')) });
    expect(await src.c.ok('query-status')).toEqual({ running: true, status: 'running' });
  });

  it('migrate-incoming without -incoming, twice, or on an address in use', async () => {
    expect(await src.c.err('migrate-incoming', { uri: 'unix:/x' })).toEqual({ class: 'GenericError', desc: "'-incoming' was not specified on the command line" });
    const path = join(dir, 'mig.sock');
    await dst.c.ok('migrate-incoming', { uri: `unix:${path}` });
    expect(await dst.c.err('migrate-incoming', { uri: `unix:${path}` })).toEqual({ class: 'GenericError', desc: 'The incoming migration has already been started' });
  });

  it('migrate-incoming on tcp port 0 reports the port it got in socket-address', async () => {
    await dst.c.ok('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
    const info = await dst.c.ok('query-migrate');
    expect(info).toEqual({ status: 'setup', 'socket-address': [{ type: 'inet', host: '127.0.0.1', port: expect.stringMatching(/^\d+$/), ipv4: true }] });
    expect(Number(info['socket-address'][0].port)).toBeGreaterThan(0);
  });

  it('parameters and capabilities out of range or unknown', async () => {
    expect(await src.c.err('migrate-set-parameters', { 'downtime-limit': -1 })).toMatchObject({ desc: expect.stringContaining("'downtime-limit'") });
    expect(await src.c.err('migrate-set-parameters', { 'downtime-limit': 'fast' })).toEqual({ class: 'GenericError', desc: "Invalid parameter type for 'downtime-limit', expected: integer" });
    expect(await src.c.err('migrate-set-parameters', { 'max-bandwidth': -5 })).toMatchObject({ desc: expect.stringContaining("'max-bandwidth'") });
    expect(await src.c.err('migrate-set-parameters', { 'multifd-channels': 4 })).toEqual({ class: 'GenericError', desc: "Parameter 'multifd-channels' is unexpected" });
    expect(await src.c.err('migrate-set-capabilities', { capabilities: [{ capability: 'xbzrle', state: true }] })).toMatchObject({ desc: expect.stringContaining("'xbzrle'") });
    expect(await src.c.err('migrate-set-capabilities', { capabilities: [{ capability: 'warp', state: true }] })).toEqual({ class: 'GenericError', desc: "Parameter 'capabilities[0].capability' does not accept value 'warp'" });
    expect(await src.c.ok('query-migrate-capabilities')).toEqual(expect.arrayContaining([{ capability: 'events', state: true }, { capability: 'xbzrle', state: false }]));
    // QEMU 11.1's MigrationCapability, as its query-qmp-schema lists it (zero-blocks went with block migration).
    expect((await src.c.ok('query-migrate-capabilities')).map((c: { capability: string }) => c.capability)).toEqual([
      'xbzrle', 'rdma-pin-all', 'auto-converge', 'events', 'postcopy-ram', 'x-colo', 'release-ram', 'return-path', 'pause-before-switchover',
      'multifd', 'dirty-bitmaps', 'postcopy-blocktime', 'late-block-activate', 'x-ignore-shared', 'validate-uuid', 'background-snapshot',
      'zero-copy-send', 'postcopy-preempt', 'switchover-ack', 'dirty-limit', 'mapped-ram',
    ]);
    expect(await src.c.err('migrate-set-capabilities', { capabilities: [{ capability: 'zero-blocks', state: false }] })).toEqual({ class: 'GenericError', desc: "Parameter 'capabilities[0].capability' does not accept value 'zero-blocks'" });
    expect(await src.c.ok('query-migrate-parameters')).toEqual({ 'downtime-limit': 300, 'max-bandwidth': 0 });
  });
});
