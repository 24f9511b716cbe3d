// The commands outside migration: control, run state, devices and objects (with the argument
// errors QEMU gives), PCI queries, and file descriptors passed with commands.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SimHost, simMachine } from '@vmmkit/sim';
import { EDU, NIC_A, NIC_B } from '@vmmkit/sim/testing';
import type { Vmm } from '@vmmkit/core';
import { BUILTIN_COMMANDS, QmpServer } from '../src/index.js';
import { TestClient, testVm } from './qmp-test-client.js';

const O_RDWR = 2;
let host: SimHost;
let vmm: Vmm;
let server: QmpServer;
let quits = 0;
let c: TestClient;

beforeEach(async () => {
  host = new SimHost(simMachine());
  vmm = await testVm(host);
  quits = 0;
  server = new QmpServer(vmm, { onQuit: () => quits++ });
  c = await TestClient.negotiated(server);
});
afterEach(async () => {
  await server.close();
  await vmm.close();
  expect(host.census().fds).toBe(0);
});

const cdevOf = (bdf: string): string => `/dev/vfio/devices/${host.readdir(`/sys/bus/pci/devices/${bdf}/vfio-dev`)[0]}`;

describe('control', () => {
  it('query-version and query-commands', async () => {
    expect(await c.ok('query-version')).toEqual({ qemu: { major: 11, minor: 1, micro: 0 }, package: expect.any(String) });
    const names = (await c.ok('query-commands')).map((x: { name: string }) => x.name);
    expect(names).toEqual(expect.arrayContaining(['qmp_capabilities', ...BUILTIN_COMMANDS.map((x) => x.name)]));
    expect(names).toEqual(expect.arrayContaining([
      'query-status', 'stop', 'cont', 'quit', 'query-pci', 'device_add', 'device_del', 'object-add', 'object-del', 'getfd', 'closefd',
      'add-fd', 'migrate', 'migrate-incoming', 'query-migrate', 'migrate-set-parameters', 'query-migrate-parameters', 'migrate_cancel',
    ]));
  });

  it('quit answers, announces SHUTDOWN, then asks the VMM to stop', async () => {
    expect(await c.ok('quit')).toEqual({});
    expect((await c.event('SHUTDOWN')).data).toEqual({ guest: false, reason: 'host-qmp-quit' });
    expect(quits).toBe(1);
    expect(await c.ok('query-status')).toEqual({ running: true, status: 'shutdown' });
  });
});

describe('run state', () => {
  it('stop and cont pause and resume the guest, with STOP and RESUME', async () => {
    await c.ok('stop');
    expect(vmm.running).toBe(false);
    expect(await c.ok('query-status')).toEqual({ running: false, status: 'paused' });
    await c.ok('stop');
    await c.ok('cont');
    expect(await c.ok('query-status')).toEqual({ running: true, status: 'running' });
    expect(c.events.map((e) => e.event)).toEqual(['STOP', 'RESUME']);
  });

  it('a VM waiting for its migration is inmigrate; stop and cont leave it waiting', async () => {
    const dstHost = new SimHost(simMachine());
    const dst = await testVm(dstHost, { incoming: true });
    const s = new QmpServer(dst, { incoming: 'defer' });
    const d = await TestClient.negotiated(s);
    expect(await d.ok('query-status')).toEqual({ running: false, status: 'inmigrate' });
    await d.ok('cont');
    await d.ok('stop');
    expect(await d.ok('query-status')).toEqual({ running: false, status: 'inmigrate' });
    await s.close();
    // Receiving it outside QMP (`run --incoming URI`): inmigrate too, and migrate-incoming is refused.
    const started = new QmpServer(dst, { incoming: 'started' });
    const e = await TestClient.negotiated(started);
    expect(await e.ok('query-status')).toEqual({ running: false, status: 'inmigrate' });
    expect(await e.err('migrate-incoming', { uri: 'unix:/nowhere' })).toEqual({ class: 'GenericError', desc: 'The incoming migration has already been started' });
    await started.close();
    await dst.close();
  });
});

describe('objects and devices', () => {
  it('hot-adds vfio-pci through an iommufd object, lists it in query-pci, and removes both with DEVICE_DELETED', async () => {
    await c.ok('object-add', { 'qom-type': 'iommufd', id: 'iommufd0' });
    await c.ok('device_add', {
      driver: 'vfio-pci', id: 'nic0', host: NIC_A, iommufd: 'iommufd0', 'x-device-dirty-page-tracking': false, 'enable-migration': 'on', addr: '0x5',
    });
    await c.ok('device_add', { driver: 'vfio-pci', id: 'edu0', host: EDU });
    expect(vmm.device('nic0')?.name).toBe(NIC_A);
    const [bus] = await c.ok('query-pci');
    expect(bus.bus).toBe(0);
    expect(bus.devices.map((d: { qdev_id: string; slot: number }) => [d.qdev_id, d.slot])).toEqual([['edu0', 1], ['nic0', 5]]);
    const nic = bus.devices[1];
    expect(nic).toMatchObject({ bus: 0, function: 0, id: { vendor: expect.any(Number), device: expect.any(Number) }, class_info: { class: expect.any(Number) } });
    expect(nic.id.vendor).toBe(vmm.device('nic0') && (await (vmm.device('nic0') as unknown as { configRead(o: number, s: 2): Promise<number> }).configRead(0, 2)));
    expect(nic.regions.length).toBeGreaterThan(0);
    expect(nic.regions[0]).toMatchObject({ bar: expect.any(Number), type: expect.stringMatching(/io|memory/), size: expect.any(Number) });

    expect(await c.err('object-del', { id: 'iommufd0' })).toMatchObject({ class: 'GenericError', desc: expect.stringContaining('in use') });
    await c.ok('device_del', { id: 'nic0' });
    expect((await c.event('DEVICE_DELETED')).data).toEqual({ device: 'nic0', path: '/machine/peripheral/nic0' });
    await c.ok('object-del', { id: 'iommufd0' });
    expect(vmm.objects.size).toBe(0);
    expect((await c.ok('query-pci'))[0].devices.map((d: { qdev_id: string }) => d.qdev_id)).toEqual(['edu0']);
  });

  it.each([
    [{ driver: 'nope' }, 'GenericError', /unknown device driver 'nope'/],
    [{ driver: 'vfio-pci', host: NIC_A, colour: 'red' }, 'GenericError', /colour/],
    [{ driver: 'vfio-pci', host: NIC_A, 'enable-migration': 'maybe' }, 'GenericError', /'maybe' for option 'enable-migration'/],
    [{ driver: 'vfio-pci', host: NIC_A, iommufd: 'ghost' }, 'GenericError', /iommufd.*ghost/],
    [{ driver: 'vfio-pci', host: '0000:00:1f.0' }, 'GenericError', /0000:00:1f\.0/],
    [{ driver: 'vfio-pci', host: NIC_A, bus: 'pci.7' }, 'GenericError', /Bus 'pci.7' not found/],
    [{ driver: 'vfio-pci', host: NIC_A, addr: '0x0' }, 'GenericError', /slot 0 .*host bridge/],
    [{ driver: 'vfio-pci', host: NIC_A, addr: 'zz' }, 'GenericError', /vfio-pci.addr.*zz/],
    [{ driver: 'vfio-pci', host: { nested: 1 } }, 'GenericError', /'host'/],
    [{ host: NIC_A }, 'GenericError', /Parameter 'driver' is missing/],
  ])('device_add %j fails with %s naming what is wrong, and leaves nothing behind', async (args, errorClass, desc) => {
    const baseline = host.census();
    expect(await c.err('device_add', args)).toEqual({ class: errorClass, desc: expect.stringMatching(desc) });
    expect(vmm.devices).toEqual([]);
    expect(host.census()).toEqual(baseline);
    expect(vmm.running).toBe(true);
  });

  it('refuses a duplicate id, an address in use, and unknown devices and objects with their classes', async () => {
    await c.ok('device_add', { driver: 'vfio-pci', id: 'n', host: NIC_A, addr: '3' });
    expect(await c.err('device_add', { driver: 'vfio-pci', id: 'n', host: NIC_B })).toMatchObject({ desc: expect.stringContaining("'n' already exists") });
    expect(await c.err('device_add', { driver: 'vfio-pci', host: NIC_B, addr: '03.0' })).toMatchObject({ desc: 'PCI: slot 3 function 0 not available for vfio-pci, in use by n' });
    expect(await c.err('device_del', { id: 'ghost' })).toEqual({ class: 'DeviceNotFound', desc: "Device 'ghost' not found" });
    expect(await c.err('object-del', { id: 'ghost' })).toEqual({ class: 'GenericError', desc: "object 'ghost' not found" });
    expect(await c.err('object-add', { 'qom-type': 'nope', id: 'x' })).toMatchObject({ desc: expect.stringContaining("unknown object type 'nope'") });
    expect(await c.err('object-add', { 'qom-type': 'iommufd' })).toEqual({ class: 'GenericError', desc: "Parameter 'id' is missing" });
  });

  it('a failing host call in device_add is a GenericError with the errno, and undoes everything (every call in turn)', async () => {
    await c.ok('object-add', { 'qom-type': 'iommufd', id: 'iommufd0' });
    const baseline = host.census();
    const before = host.callCount('any');
    await c.ok('device_add', { driver: 'vfio-pci', id: 'nic0', host: NIC_A, iommufd: 'iommufd0' });
    const calls = host.callCount('any') - before;
    await c.ok('device_del', { id: 'nic0' });
    expect(calls).toBeGreaterThan(5);
    for (let nth = 1; nth <= calls; nth++) {
      host.injectFault({ syscall: 'any', errno: 'EIO', nth });
      const r = await c.execute('device_add', { driver: 'vfio-pci', id: 'nic0', host: NIC_A, iommufd: 'iommufd0' });
      const what = `call ${nth} of ${calls} (${host.lastInjectedFault})`;
      if ('error' in r) {
        expect(r.error, what).toEqual({ class: 'GenericError', desc: expect.stringMatching(/EIO/) });
        expect(vmm.devices, what).toEqual([]);
        expect(host.census(), what).toEqual(baseline);
      } else {
        await c.ok('device_del', { id: 'nic0' });
      }
      expect(await c.ok('query-status'), what).toEqual({ running: true, status: 'running' });
    }
    await c.ok('device_add', { driver: 'vfio-pci', id: 'nic0', host: NIC_A, iommufd: 'iommufd0' });
  }, 60_000);
});

describe('file descriptors', () => {
  it('getfd names a descriptor that device_add fd=NAME and object-add fd=NAME then use', async () => {
    const iommu = host.open('/dev/iommu', O_RDWR);
    const cdev = host.open(cdevOf(NIC_A), O_RDWR);
    await c.ok('getfd', { fdname: 'iommu' }, [iommu]);
    await c.ok('getfd', { fdname: 'nic' }, [cdev]);
    await c.ok('object-add', { 'qom-type': 'iommufd', id: 'iommufd0', fd: 'iommu' });
    await c.ok('device_add', { driver: 'vfio-pci', id: 'nic0', fd: 'nic', iommufd: 'iommufd0' });
    expect(vmm.device('nic0')).toBeDefined();
    // The names were taken: they cannot be used or closed again.
    expect(await c.err('closefd', { fdname: 'nic' })).toEqual({ class: 'GenericError', desc: "File descriptor named 'nic' not found" });
    await c.ok('device_del', { id: 'nic0' });
    await c.ok('object-del', { id: 'iommufd0' });
    // The device closed its fd, the server the iommufd's: nothing is open.
    expect(host.census().fds).toBe(0);
  });

  it('getfd without a descriptor, with a name starting with a digit, closefd of a name never given', async () => {
    expect(await c.err('getfd', { fdname: 'x' })).toEqual({ class: 'GenericError', desc: 'No file descriptor supplied via SCM_RIGHTS' });
    const fd = host.eventfd(0, 0);
    expect(await c.err('getfd', { fdname: '1x' }, [fd])).toEqual({ class: 'GenericError', desc: 'File descriptor name cannot start with a digit' });
    // A descriptor no command took is closed after the command it came with.
    expect(() => host.close(fd)).toThrow(/EBADF/);
    expect(await c.err('closefd', { fdname: 'x' })).toEqual({ class: 'GenericError', desc: "File descriptor named 'x' not found" });
    expect(await c.err('device_add', { driver: 'vfio-pci', fd: 'nope', iommufd: 'i' })).toEqual({ class: 'GenericError', desc: "File descriptor named 'nope' has not been found" });
  });

  it('closefd closes; getfd again under a name replaces and closes the old one; the client leaving closes the rest', async () => {
    const [a, b, d] = [host.eventfd(0, 0), host.eventfd(0, 0), host.eventfd(0, 0)];
    await c.ok('getfd', { fdname: 'a' }, [a]);
    await c.ok('getfd', { fdname: 'a' }, [b]);
    expect(() => host.close(a)).toThrow(/EBADF/);
    await c.ok('closefd', { fdname: 'a' });
    expect(() => host.close(b)).toThrow(/EBADF/);
    await c.ok('getfd', { fdname: 'd' }, [d]);
    c.session.end();
    expect(() => host.close(d)).toThrow(/EBADF/);
  });

  it('add-fd keeps descriptors in sets until remove-fd or the server closes', async () => {
    const [a, b, d] = [host.eventfd(0, 0), host.eventfd(0, 0), host.eventfd(0, 0)];
    expect(await c.ok('add-fd', { opaque: 'rw' }, [a])).toEqual({ 'fdset-id': 0, fd: a });
    expect(await c.ok('add-fd', { 'fdset-id': 0 }, [b])).toEqual({ 'fdset-id': 0, fd: b });
    expect(await c.ok('add-fd', {}, [d])).toEqual({ 'fdset-id': 1, fd: d });
    expect(await c.ok('query-fdsets')).toEqual([{ 'fdset-id': 0, fds: [{ fd: a, opaque: 'rw' }, { fd: b }] }, { 'fdset-id': 1, fds: [{ fd: d }] }]);
    await c.ok('remove-fd', { 'fdset-id': 0, fd: a });
    expect(() => host.close(a)).toThrow(/EBADF/);
    expect(await c.err('remove-fd', { 'fdset-id': 7 })).toEqual({ class: 'GenericError', desc: 'File descriptor set 7 not found' });
    expect(await c.err('add-fd', {})).toEqual({ class: 'GenericError', desc: 'No file descriptor supplied via SCM_RIGHTS' });
    // afterEach checks that closing the server closed b and d.
  });
});
