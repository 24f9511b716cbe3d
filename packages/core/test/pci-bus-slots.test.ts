// The slots of the VM's PCI bus 0: a realized device that is a PCI function takes the lowest
// free slot (1-31; 0 is the host bridge's), gives it back when removed, and a device that finds
// the bus full is unrealized again with a ConfigError; other devices take no slot.

import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import type { DependencyContainer } from 'tsyringe';
import { ConfigError, LinuxHost, Vmm, VmmDeviceTypes, isPciFunction, type PciFunction, type VmmDevice, type VmmPlugin } from '../src/index.js';

const onLinux = process.platform === 'linux';

/** `pci-fake` devices (PCI functions with no config space to speak of) and `plain` devices. */
function fakes(unrealized: string[]): VmmPlugin {
  return {
    name: 'fakes',
    register(c: DependencyContainer) {
      c.register(VmmDeviceTypes, {
        useValue: {
          driver: 'pci-fake', options: {},
          realize: async (ctx): Promise<PciFunction> => ({
            id: ctx.id, driver: 'pci-fake', name: ctx.id, unrealize: async () => void unrealized.push(ctx.id),
            configRead: () => 0xffff_ffff, configWrite: () => {}, barRead: () => 0n, barWrite: () => {}, barSize: () => 0n,
          }),
        },
      });
      c.register(VmmDeviceTypes, {
        useValue: { driver: 'plain', options: {}, realize: async (ctx): Promise<VmmDevice> => ({ id: ctx.id, driver: 'plain', name: ctx.id, unrealize: async () => {} }) },
      });
    },
  };
}

describe.skipIf(!onLinux)('the PCI bus slots of a VM', () => {
  it('go to PCI functions in order, come back on removal, and a full bus refuses the 32nd', async () => {
    const unrealized: string[] = [];
    const vmm = await Vmm.create({ host: new LinuxHost(), plugins: [fakes(unrealized)], memory: [{ gpa: 0n, size: 1n << 20n }] });
    try {
      const plain = await vmm.addDevice('plain,id=p');
      expect(isPciFunction(plain)).toBe(false);
      for (let i = 1; i <= 31; i++) await vmm.addDevice(`pci-fake,id=f${i}`);
      expect(vmm.pciBus.function(0)).toBeUndefined();
      expect(vmm.pciBus.function(1)?.id).toBe('f1');
      expect(vmm.pciBus.function(31)?.id).toBe('f31');
      await expect(vmm.addDevice('pci-fake,id=f32')).rejects.toThrow(ConfigError);
      expect(unrealized).toEqual(['f32']);
      expect(vmm.device('f32')).toBeUndefined();
      await vmm.removeDevice('f7');
      expect(vmm.pciBus.function(7)).toBeUndefined();
      await vmm.addDevice('pci-fake,id=f33');
      expect(vmm.pciBus.function(7)?.id).toBe('f33');
    } finally {
      await vmm.close();
    }
  });
});
