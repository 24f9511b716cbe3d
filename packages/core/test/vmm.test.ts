// The Vmm composition root with test plugins: descriptions, validation, per-device backends,
// events, and cleanup on failure and on close. Real memory comes from LinuxHost.

import { describe, expect, it } from 'vitest';
import type { DependencyContainer } from 'tsyringe';
import {
  AddressSpace, ConfigError, LinuxHost, VFIO_DEVICE_OPTIONS, VfioContainerBase, VfioDevice, VfioIommuBackends, VmmDeviceTypes,
  VmmEventBus, VmmObjectTypes, Vmm, resolveVfioDevice,
  type HostKernel, type VfioAddressSpace, type VfioContainerContext, type VfioIommuBackend, type VmmObject, type VmmPlugin,
} from '../src/index.js';

const onLinux = process.platform === 'linux';

/** A container with no kernel behind it: maps nothing. */
class FakeContainer extends VfioContainerBase {
  constructor(context: VfioContainerContext) {
    super(context);
  }
  protected async doDmaMap(): Promise<void> {}
  protected async doDmaUnmap(): Promise<void> {}
  protected doRelease(): void {}
}

/** A backend that records what it is asked and can be told to fail. */
class FakeBackend implements VfioIommuBackend {
  readonly attached: string[] = [];
  failNext: Error | undefined;
  constructor(readonly kind: string, private readonly host: HostKernel) {}
  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.attached.push(name);
    const container = new FakeContainer({ id: `${this.kind}-c`, backend: this, space, host: this.host, events: new VmmEventBus() });
    await container.open();
    container.addDevice(device);
    return container;
  }
  async detachDevice(device: VfioDevice): Promise<void> {
    this.attached.splice(this.attached.indexOf(device.name), 1);
    const container = device.container!;
    await container.removeDevice(device);
    await container.close();
  }
}

const widgetPlugin = (closed: string[]): VmmPlugin => ({
  name: 'widgets',
  register(c: DependencyContainer) {
    c.register(VmmObjectTypes, {
      useValue: {
        type: 'iommufd',
        options: { fd: { kind: 'uint', doc: 'fd' } },
        create: (o): VmmObject => ({ id: o.id, type: 'iommufd', close: () => void closed.push(o.id), busyReason: () => (users > 0 ? `${users} device(s) use it` : undefined) }),
      },
    });
  },
});
let users = 0;

const fakeDevicePlugin = (backends: FakeBackend[]): VmmPlugin => ({
  name: 'fake-vfio',
  register(c: DependencyContainer) {
    for (const b of backends) c.register(VfioIommuBackends, { useValue: b });
    c.register(VmmDeviceTypes, {
      useValue: {
        driver: 'vfio-fake',
        options: VFIO_DEVICE_OPTIONS,
        async realize(ctx) {
          const resolved = resolveVfioDevice('-device vfio-fake', ctx.options);
          const device = new VfioDevice(resolved.location);
          if (resolved.iommufd) users++;
          try {
            await ctx.vfio.attach(device, resolved.backend, ctx.pciBus.deviceAddressSpace());
          } catch (e) {
            if (resolved.iommufd) users--;
            throw e;
          }
          return {
            id: ctx.id, driver: 'vfio-fake', name: device.name,
            unrealize: async () => {
              await ctx.vfio.detach(device);
              if (resolved.iommufd) users--;
            },
          };
        },
      },
    });
  },
});

describe.skipIf(!onLinux)('Vmm', () => {
  const host = onLinux ? new LinuxHost() : undefined!;
  const setup = async () => {
    users = 0;
    const legacy = new FakeBackend('vfio-iommu-legacy', host);
    const iommufd = new FakeBackend('vfio-iommu-iommufd', host);
    const closed: string[] = [];
    const vmm = await Vmm.create({ host, plugins: [widgetPlugin(closed), fakeDevicePlugin([legacy, iommufd])], memory: [{ gpa: 0n, size: 1n << 20n }] });
    return { vmm, legacy, iommufd, closed };
  };

  it('lays out guest memory in system memory and picks the backend per device', async () => {
    const { vmm, legacy, iommufd } = await setup();
    expect(vmm.addressSpace.sections).toHaveLength(1);
    const events: string[] = [];
    vmm.events.on('device:realized', (e) => events.push(`${e.id}:${e.name}`));
    vmm.addObject('iommufd,id=iommufd0');
    await vmm.addDevice('vfio-fake,host=00:03.0');
    await vmm.addDevice('-device vfio-fake,host=0000:00:04.0,iommufd=iommufd0,id=nic');
    await vmm.addDevice({ driver: 'vfio-fake', sysfsdev: '/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', 'vfio-iommu': 'iommufd' });
    expect(legacy.attached).toEqual(['0000:00:03.0']);
    expect(iommufd.attached).toEqual(['0000:00:04.0', '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001']);
    expect(events).toEqual(['vfio-fake.0:0000:00:03.0', 'nic:0000:00:04.0', 'vfio-fake.1:83b8f4f2-509f-382f-3c1e-e6bfe0fa1001']);
    await vmm.close();
    expect(legacy.attached).toEqual([]);
    expect(iommufd.attached).toEqual([]);
  });

  it('refuses bad descriptions with errors naming the option', async () => {
    const { vmm } = await setup();
    vmm.addObject({ type: 'iommufd', id: 'iommufd0' });
    const cases: [string, RegExp][] = [
      ['vfio-nope,host=00:03.0', /unknown device driver 'vfio-nope' \(known: vfio-fake\)/],
      ['vfio-fake,host=00:03.0,rombar=1', /unknown option 'rombar'/],
      ['vfio-fake', /no host device given/],
      ['vfio-fake,fd=5', /only the iommufd backend can use: add iommufd=<id>/],
      ['vfio-fake,host=00:03.0,iommufd=iommufd7', /refers to 'iommufd7', but there is no -object iommufd/],
      ['vfio-fake,host=00:33.0', /invalid value '00:33.0' for option 'host'/],
      ['vfio-fake,host=00:03.0,sysfsdev=/sys/x', /give host= or sysfsdev=, not both/],
      ['vfio-fake,host=00:03.0,vfio-iommu=mine', /no VFIO IOMMU backend 'mine' is registered \(registered: vfio-iommu-legacy, vfio-iommu-iommufd\)/],
    ];
    for (const [desc, message] of cases) {
      await expect(vmm.addDevice(desc), desc).rejects.toSatisfy((e: Error) => e instanceof ConfigError && message.test(e.message));
    }
    expect(() => vmm.addObject('iommufd,id=iommufd0')).toThrow("an object with id 'iommufd0' already exists");
    expect(() => vmm.addObject('memory-backend-ram,id=m')).toThrow(/unknown object type 'memory-backend-ram' \(known: iommufd\)/);
    expect(() => vmm.addObject('iommufd')).toThrow('an object needs id=');
    expect(vmm.devices).toEqual([]);
    await vmm.close();
  });

  it('leaves nothing behind when realize fails, and keeps an object in use', async () => {
    const { vmm, iommufd, closed } = await setup();
    vmm.addObject('iommufd,id=iommufd0');
    iommufd.failNext = new Error('IOMMU_HWPT_ALLOC -> EOPNOTSUPP');
    await expect(vmm.addDevice('vfio-fake,host=00:04.0,iommufd=iommufd0,id=d')).rejects.toThrow('EOPNOTSUPP');
    expect(vmm.device('d')).toBeUndefined();
    await vmm.addDevice('vfio-fake,host=00:04.0,iommufd=iommufd0,id=d');
    await expect(vmm.addDevice('vfio-fake,host=00:05.0,id=d')).rejects.toThrow("a device with id 'd' already exists");
    await expect(vmm.removeObject('iommufd0')).rejects.toThrow("object 'iommufd0' is in use: 1 device(s) use it");
    await vmm.removeDevice('d');
    await vmm.removeObject('iommufd0');
    expect(closed).toEqual(['iommufd0']);
    await vmm.close();
    await expect(vmm.addDevice('vfio-fake,host=00:04.0')).rejects.toThrow("VMM 'vm' is closed");
  });

  it('knows which device ids it made up (a description without id=)', async () => {
    const { vmm } = await setup();
    const anonymous = await vmm.addDevice('vfio-fake,host=00:04.0');
    await vmm.addDevice('vfio-fake,host=00:05.0,id=named');
    expect(vmm.hasGeneratedId(anonymous.id)).toBe(true);
    expect(vmm.hasGeneratedId('named')).toBe(false);
    expect(vmm.hasGeneratedId('nothing')).toBe(false);
    await vmm.removeDevice(anonymous.id);
    expect(vmm.hasGeneratedId(anonymous.id)).toBe(false);
    await vmm.close();
  });

  it('refuses a plugin given twice', async () => {
    await expect(Vmm.create({ host, plugins: [widgetPlugin([]), widgetPlugin([])] })).rejects.toThrow("plugin 'widgets' is given twice");
  });

  it.for([
    ['2^60 bytes of RAM', { gpa: 0n, size: 1n << 60n }, 'must be at most'],
    ['2^64 bytes of RAM', { gpa: 0n, size: 1n << 64n }, 'must be at most'],
    ['2^53 + 1 page of RAM', { gpa: 0n, size: (1n << 53n) + 4096n }, 'must be at most'],
    ['a block past 2^64', { gpa: 0xffff_ffff_ffff_f000n, size: 0x2000n }, 'must end within the 64-bit guest physical address space'],
  ] as const)('refuses %s with a ConfigError naming the memory option', async ([, block, says]) => {
    const e = await Vmm.create({ host, plugins: [], memory: [block] }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).option).toBe('memory');
    expect((e as ConfigError).message).toContain(`memory block ram0 at 0x${block.gpa.toString(16)} of 0x${block.size.toString(16)} bytes ${says}`);
  });
});
