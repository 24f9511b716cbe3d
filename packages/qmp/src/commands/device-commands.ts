// Devices (qapi/qdev.json, qapi/pci.json): device_add with the device types the VMM's plugins
// registered (vfio-pci's host=, sysfsdev=, fd=, iommufd=, x-device-dirty-page-tracking=,
// enable-migration=, ...), device_del, query-pci.

import type { QmpArgs, QmpValue } from '../protocol/qmp-args.js';
import type { QmpClientFds, QmpCommand } from '../protocol/qmp-command.js';
import { genericError, QmpError } from '../protocol/qmp-error.js';
import { hasPciConfig, pciDeviceInfo } from './pci-info.js';

/** The one bus vmmkit's VMs have, under the names QEMU's machines give their root bus. */
const ROOT_BUSES = new Set(['pci.0', 'pcie.0']);

export const deviceAdd: QmpCommand = {
  name: 'device_add',
  args: { driver: 'str', '*bus': 'str', '*id': 'str' },
  extraArgs: true,
  run: async (args, { vmm, server, fds }) => {
    const { driver, bus, addr, ...props } = args;
    if (bus !== undefined && !ROOT_BUSES.has(bus as string)) throw genericError(`Bus '${String(bus)}' not found`);
    if (addr !== undefined && typeof addr !== 'string') throw genericError("Invalid parameter type for 'addr', expected: string");
    const slot = addr === undefined ? undefined : server.pciSlots.check(addr, driver as string);
    const fdName = namedFd(props.fd, fds);
    const description = scalarProperties({ driver, ...props, ...(fdName && { fd: fds.named.get(fdName) }) });
    const device = await vmm.addDevice(description);
    // The device owns a named descriptor now (QEMU's monitor_fd_param takes it from the monitor).
    if (fdName) fds.named.delete(fdName);
    server.pciSlots.place(device.id, slot);
    return {};
  },
};

export const deviceDel: QmpCommand = {
  name: 'device_del',
  args: { id: 'str' },
  run: async ({ id }, { vmm }) => {
    if (!vmm.device(id as string)) throw new QmpError('DeviceNotFound', `Device '${String(id)}' not found`);
    // DEVICE_DELETED follows from the device's unrealize (the server forwards it).
    await vmm.removeDevice(id as string);
    return {};
  },
};

export const queryPci: QmpCommand = {
  name: 'query-pci',
  args: {},
  run: async (_args, { vmm, server }) => {
    const devices: Record<string, unknown>[] = [];
    for (const d of vmm.devices) {
      const slot = server.pciSlots.slotOf(d.id);
      if (hasPciConfig(d) && slot !== undefined) devices.push(await pciDeviceInfo(d.id, slot, d));
    }
    devices.sort((a, b) => (a.slot as number) - (b.slot as number));
    return [{ bus: 0, devices }];
  },
};

/**
 * `fd=NAME` names a descriptor the client passed with getfd (a number is used as it is, as in
 * QEMU). Returns the name, or undefined.
 * @throws QmpError when the name is not one the client gave.
 */
export function namedFd(value: QmpValue | undefined, fds: QmpClientFds): string | undefined {
  if (typeof value !== 'string' || /^\d+$/.test(value)) return undefined;
  if (!fds.named.has(value)) throw genericError(`File descriptor named '${value}' has not been found`);
  return value;
}

/** Properties as a vmmkit description: scalars only. */
export function scalarProperties(args: QmpArgs): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(args)) {
    if (value === null || typeof value === 'object') throw genericError(`Invalid parameter type for '${key}', expected: a string, number or boolean`);
    out[key] = value;
  }
  return out;
}

export const DEVICE_COMMANDS: readonly QmpCommand[] = [deviceAdd, deviceDel, queryPci];
