// query-pci's PciDeviceInfo for one device, read from its configuration space as a guest would
// (qapi/pci.json): ids, class, interrupt pin and BARs. Config reads may be asynchronous (a
// vfio-user device's are messages), so the info is read one access after the other.

/** A device with a PCI configuration space (vfio-pci, or a plugin's PCI device). */
export interface PciConfigSpace {
  configRead(offset: number, size: 1 | 2 | 4): number | Promise<number>;
  /** The size of a BAR, when the device knows it. */
  bar?(index: number): { readonly size: bigint };
}

/** Whether a device has a configuration space query-pci can read. */
export function hasPciConfig(device: object): device is PciConfigSpace {
  return typeof (device as Partial<PciConfigSpace>).configRead === 'function';
}

const PCI_BASE_ADDRESS_0 = 0x10;
const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;

/** The PciDeviceInfo of the device in `slot` of bus 0. */
export async function pciDeviceInfo(id: string, slot: number, device: PciConfigSpace): Promise<Record<string, unknown>> {
  const read = async (offset: number, size: 1 | 2 | 4): Promise<number> => device.configRead(offset, size);
  const pin = await read(0x3d, 1);
  return {
    bus: 0, slot, function: 0,
    class_info: { class: await read(0x0a, 2) },
    id: { vendor: await read(0x00, 2), device: await read(0x02, 2), subsystem: await read(0x2e, 2), 'subsystem-vendor': await read(0x2c, 2) },
    ...(pin !== 0 && { irq_pin: pin, irq: await read(0x3c, 1) }),
    qdev_id: id,
    regions: await regions(device, read),
  };
}

async function regions(device: PciConfigSpace, read: (offset: number, size: 4) => Promise<number>): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (let bar = 0; bar < 6; bar++) {
    const low = (await read(PCI_BASE_ADDRESS_0 + bar * 4, 4)) >>> 0;
    let size = 0n;
    try {
      size = device.bar?.(bar).size ?? 0n;
    } catch {
      // The device has no such BAR.
    }
    if (size === 0n) continue;
    if (low & PCI_BASE_ADDRESS_SPACE_IO) {
      out.push({ bar, type: 'io', address: low & ~0x3, size: Number(size) });
      continue;
    }
    const is64 = (low & 0x6) === PCI_BASE_ADDRESS_MEM_TYPE_64;
    const high = is64 ? (await read(PCI_BASE_ADDRESS_0 + (bar + 1) * 4, 4)) >>> 0 : 0;
    out.push({
      bar, type: 'memory', address: high * 2 ** 32 + ((low & ~0xf) >>> 0), size: Number(size),
      prefetch: (low & PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0, mem_type_64: is64,
    });
    if (is64) bar++;
  }
  return out;
}
