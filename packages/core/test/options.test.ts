import { describe, expect, it } from 'vitest';
import { ConfigError, parseDescription, validateOptions, type OptionSchema } from '../src/index.js';

const schema: OptionSchema = {
  host: { kind: 'string', doc: 'BDF' },
  iommufd: { kind: { object: 'iommufd' }, doc: 'iommufd object' },
  'enable-migration': { kind: 'on-off-auto', doc: 'migration' },
  'x-flag': { kind: 'on-off', doc: 'a flag' },
  count: { kind: 'uint', doc: 'a number' },
};
const objects = new Map([['iommufd0', 'iommufd'], ['mem0', 'memory-backend-ram']]);
const exists = (type: string, id: string) => objects.get(id) === type;
const check = (text: string) => validateOptions(parseDescription(text, '-device', 'driver'), schema, exists);

describe('QEMU-style descriptions', () => {
  it('parses the driver, options, the ,, escape and bare boolean keys', () => {
    const p = parseDescription('-device vfio-pci,host=0000:00:03.0,id=a,,b,x-flag', '-device', 'driver');
    expect(p.type).toBe('vfio-pci');
    expect([...p.values]).toEqual([['host', '0000:00:03.0'], ['id', 'a,b'], ['x-flag', 'on']]);
    expect(p.label).toBe('-device vfio-pci');
  });

  it('takes the type from driver=, qom-type= or a typed object', () => {
    expect(parseDescription('driver=vfio-pci,host=x', '-device', 'driver').type).toBe('vfio-pci');
    expect(parseDescription('qom-type=iommufd,id=i0', '-object', 'type').type).toBe('iommufd');
    const typed = parseDescription({ driver: 'vfio-pci', 'x-flag': false, count: 3, skipped: undefined }, '-device', 'driver');
    expect([...typed.values]).toEqual([['x-flag', 'off'], ['count', '3']]);
  });

  it('refuses a missing type and a repeated option', () => {
    expect(() => parseDescription('host=x', '-device', 'driver')).toThrow('-device: no driver given');
    expect(() => parseDescription('vfio-pci,host=a,host=b', '-device', 'driver')).toThrow("option 'host' is given twice");
  });

  it('converts values by kind', () => {
    expect(check('vfio-pci,host=h,iommufd=iommufd0,enable-migration=on,x-flag=no,count=0x10')).toEqual({
      host: 'h', iommufd: 'iommufd0', 'enable-migration': 'on', 'x-flag': false, count: 16,
    });
  });

  it('names the option and value that are wrong', () => {
    const err = (text: string) => {
      try {
        check(text);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return e as ConfigError;
      }
      throw new Error('no error');
    };
    expect(err('vfio-pci,bogus=1').message).toBe("-device vfio-pci: unknown option 'bogus' (known: id, host, iommufd, enable-migration, x-flag, count)");
    expect(err('vfio-pci,bogus=1').option).toBe('bogus');
    expect(err('vfio-pci,enable-migration=maybe').message).toBe("-device vfio-pci: invalid value 'maybe' for option 'enable-migration' (expected on, off or auto)");
    expect(err('vfio-pci,x-flag=2').message).toContain('(expected on or off)');
    expect(err('vfio-pci,count=-1').message).toContain('(expected a non-negative integer)');
    expect(err('vfio-pci,iommufd=iommufd9').message).toBe("-device vfio-pci: option 'iommufd' refers to 'iommufd9', but there is no -object iommufd with that id");
    expect(err('vfio-pci,iommufd=mem0').message).toContain("no -object iommufd with that id");
    expect(err('vfio-pci,id=9lives').option).toBe('id');
  });
});
