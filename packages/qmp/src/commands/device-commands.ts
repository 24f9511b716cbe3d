// Devices (qapi/qdev.json, qapi/pci.json): device_add with the device types the VMM's plugins
// registered (vfio-pci's host=, sysfsdev=, fd=, iommufd=, x-device-dirty-page-tracking=,
// enable-migration=, ...), device_del, query-pci.

import type { DescriptionValue } from '@vmmkit/core';
import type { QmpArgs, QmpValue } from '../protocol/qmp-args.js';
import type { QmpClientFds, QmpCommand } from '../protocol/qmp-command.js';
import { genericError, QmpError } from '../protocol/qmp-error.js';
import { inClientTerms } from './passed-fd-errors.js';
import { hasPciConfig, pciDeviceInfo } from './pci-info.js';

/** The one bus vmmkit's VMs have, under the names QEMU's machines give their root bus. */
const ROOT_BUSES = new Set(['pci.0', 'pcie.0']);

export const deviceAdd: QmpCommand = {
  name: 'device_add',
  args: { driver: 'str', '*bus': 'str', '*id': 'str' },
  extraArgs: true,
  run: async (args, { vmm, server, fds }) => {
    const { driver, bus, addr, ...props } = args;
    checkId(props.id);
    // QEMU's option list refuses a taken id before the device is looked at.
    if (typeof props.id === 'string' && vmm.device(props.id)) throw genericError(`Duplicate ID '${props.id}' for device`);
    if (bus !== undefined && !ROOT_BUSES.has(bus as string)) throw genericError(`Bus '${String(bus)}' not found`);
    if (addr !== undefined && typeof addr !== 'string') throw genericError("Invalid parameter type for 'addr', expected: string");
    const slot = addr === undefined ? undefined : server.pciSlots.check(addr, driver as string);
    const fdName = namedFd(props.fd, fds);
    const fd = fdName ? fds.named.get(fdName) : undefined;
    const description = descriptionOf({ driver, ...props, ...(fd !== undefined && { fd }) });
    let device;
    try {
      device = await vmm.addDevice(description);
    } catch (e) {
      if (props.fd === undefined) throw e;
      // A device opened from a descriptor is VFIO_FD<n> to VFIO: the client knows it by its id.
      const subject = props.id === undefined ? `${String(driver)} (without id)` : `${String(driver)} '${String(props.id)}'`;
      throw inClientTerms(e, { subject, fd: fd ?? Number(props.fd), fdName });
    }
    // The device owns a named descriptor now (QEMU's monitor_fd_param takes it from the monitor).
    if (fdName) fds.named.delete(fdName);
    server.pciSlots.place(device.id, slot);
    return {};
  },
};

export const deviceDel: QmpCommand = {
  name: 'device_del',
  args: { id: 'str' },
  run: async ({ id }, { vmm, server }) => {
    // An id, or a QOM path (an anonymous device has nothing else), as QEMU's find_device_state.
    const device = server.qomPaths.resolve(id as string);
    if (device === undefined) throw new QmpError('DeviceNotFound', `Device '${String(id)}' not found`);
    // DEVICE_DELETED follows from the device's unrealize (the server's QOM paths send it).
    await vmm.removeDevice(device);
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
      // An anonymous device's qdev_id is empty, as QEMU's.
      if (hasPciConfig(d) && slot !== undefined) devices.push(await pciDeviceInfo(server.qomPaths.clientId(d.id) ?? '', slot, d));
    }
    devices.sort((a, b) => (a.slot as number) - (b.slot as number));
    return [{ bus: 0, devices }];
  },
};

/**
 * QEMU's id_wellformed: letters, digits, '-', '.', '_', starting with a letter.
 * @throws QmpError naming `id` when it is not.
 */
export function checkId(id: QmpValue | undefined): void {
  if (typeof id === 'string' && !/^[A-Za-z][A-Za-z0-9._-]*$/.test(id)) throw genericError("Parameter 'id' expects an identifier");
}

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

/**
 * Properties as a vmmkit description: scalars, and objects of them for QEMU's structured
 * properties (vfio-user-pci's `socket: { path, type }`), which the description spells as their
 * dotted options. Arrays and null are no property's type.
 */
export function descriptionOf(args: QmpArgs): Record<string, DescriptionValue> {
  const out: Record<string, DescriptionValue> = {};
  for (const [key, value] of Object.entries(args)) out[key] = propertyValue(key, value);
  return out;
}

function propertyValue(key: string, value: QmpValue): DescriptionValue {
  if (value === null || Array.isArray(value)) throw genericError(`Invalid parameter type for '${key}', expected: a string, number, boolean or object`);
  if (typeof value !== 'object') return value;
  const out: Record<string, DescriptionValue> = {};
  for (const [inner, v] of Object.entries(value)) out[inner] = propertyValue(`${key}.${inner}`, v);
  return out;
}

export const DEVICE_COMMANDS: readonly QmpCommand[] = [deviceAdd, deviceDel, queryPci];
