// Build the simulated machine from its description: IOMMUs, groups, devices, and the /dev and
// sysfs entries Linux would show for them.

import { ConfigError } from '@vmmkit/core';
import type { SimHostConfig, SimDeviceConfig } from './config.js';
import { createModel } from './devices/models.js';
import { NullFile } from './kernel/attr-file.js';
import { SimDevice } from './kernel/sim-device.js';
import { SimGroup } from './kernel/sim-group.js';
import { SimIommu } from './kernel/sim-iommu.js';
import type { SimKernel } from './kernel/sim-kernel.js';
import { IommufdFile } from './iommufd/iommufd-file.js';
import { linuxSeries } from './kernel/linux-series.js';
import { VfioContainerFile } from './vfio/container-file.js';
import { VfioDeviceFile } from './vfio/device-file.js';
import { VfioGroupFile } from './vfio/group-file.js';

const BDF = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Populate `kernel` with the machine `config` describes. Throws ConfigError on a bad description. */
export function buildMachine(kernel: SimKernel, config: SimHostConfig): void {
  kernel.linux = linuxSeries(config.kernel);
  for (const c of config.iommus ?? [{ id: 'iommu0' }]) {
    if (kernel.iommus.has(c.id)) throw new ConfigError(`SimHost: iommu '${c.id}' is declared twice`);
    kernel.iommus.set(c.id, new SimIommu(c));
  }
  const firstIommu = kernel.iommus.values().next().value;
  const explicitGroups = new Set((config.devices ?? []).flatMap((d) => (d.group === undefined ? [] : [d.group])));
  let nextGroup = 0;
  let nextCdev = 0;
  for (const c of config.devices ?? []) {
    const name = checkName(c);
    if (kernel.devices.has(name)) throw new ConfigError(`SimHost: device '${name}' is declared twice`);
    const iommu = c.uuid ? undefined : c.iommu === undefined ? firstIommu : kernel.iommus.get(c.iommu);
    if (!c.uuid && !iommu) throw new ConfigError(`SimHost: device '${name}' names unknown iommu '${c.iommu}'`);
    if (c.uuid && c.iommu) throw new ConfigError(`SimHost: mdev '${name}' has no IOMMU of its own; drop iommu: '${c.iommu}'`);
    let groupId = c.group;
    if (groupId === undefined) {
      while (explicitGroups.has(nextGroup) || kernel.groups.has(nextGroup)) nextGroup++;
      groupId = nextGroup;
    }
    const group = kernel.groups.get(groupId) ?? new SimGroup(groupId);
    kernel.groups.set(groupId, group);
    const vfio = (c.driver ?? 'vfio-pci') === 'vfio-pci';
    const device = new SimDevice(c, createModel(c), iommu, group, vfio ? nextCdev++ : undefined, () => kernel.now);
    kernel.devices.set(name, device);
  }
  populatePaths(kernel);
}

function checkName(c: SimDeviceConfig): string {
  if ((c.bdf === undefined) === (c.uuid === undefined)) {
    throw new ConfigError('SimHost: a device needs exactly one of bdf (PCI function) or uuid (mdev)');
  }
  if (c.bdf !== undefined && !BDF.test(c.bdf)) throw new ConfigError(`SimHost: bdf '${c.bdf}' is not DDDD:BB:DD.F (lower-case hex)`);
  if (c.uuid !== undefined && !UUID.test(c.uuid)) throw new ConfigError(`SimHost: uuid '${c.uuid}' is not a lower-case UUID`);
  return (c.bdf ?? c.uuid)!;
}

const hex = (bytes: Uint8Array, offset: number, size: 2 | 4): string => {
  const v = size === 2 ? bytes[offset]! | (bytes[offset + 1]! << 8) : new DataView(bytes.buffer, bytes.byteOffset).getUint32(offset, true) >>> 8;
  return `0x${v.toString(16).padStart(size === 2 ? 4 : 6, '0')}\n`;
};

function populatePaths(kernel: SimKernel): void {
  const { fs, features } = kernel;
  fs.chr('/dev/null', () => new NullFile());
  if (features.iommufd) fs.chr('/dev/iommu', () => new IommufdFile(kernel));
  if (features.vfioContainer) fs.chr('/dev/vfio/vfio', () => new VfioContainerFile(kernel));
  fs.mkdir('/sys/bus/pci/drivers/vfio-pci');
  fs.mkdir('/sys/bus/mdev/devices');
  for (const group of kernel.groups.values()) {
    fs.mkdir(`/sys/kernel/iommu_groups/${group.id}/devices`);
    if (features.vfioContainer && group.devices.some((d) => d.vfioBound)) {
      fs.chr(`/dev/vfio/${group.id}`, () => new VfioGroupFile(kernel, group));
    }
  }
  for (const device of kernel.devices.values()) {
    const dir = device.mdev ? `/sys/devices/virtual/vmmkit-sim/${device.name}` : `/sys/devices/pci${device.name.slice(0, 7)}/${device.name}`;
    const up = dir.split('/').length - 2; // from dir to /sys
    const toSys = '../'.repeat(up);
    fs.mkdir(dir);
    if (device.mdev) fs.link(`/sys/bus/mdev/devices/${device.name}`, `../../../${dir.slice('/sys/'.length)}`);
    else fs.link(`/sys/bus/pci/devices/${device.name}`, `../../../${dir.slice('/sys/'.length)}`);
    fs.link(`${dir}/subsystem`, `${toSys}bus/${device.mdev ? 'mdev' : 'pci'}`);
    fs.link(`${dir}/iommu_group`, `${toSys}kernel/iommu_groups/${device.group.id}`);
    fs.link(`/sys/kernel/iommu_groups/${device.group.id}/devices/${device.name}`, `../../../../${dir.slice('/sys/'.length)}`);
    if (!device.mdev) {
      const config = device.model.config;
      fs.attr(`${dir}/vendor`, () => hex(config, 0x00, 2));
      fs.attr(`${dir}/device`, () => hex(config, 0x02, 2));
      fs.attr(`${dir}/class`, () => hex(config, 0x08, 4));
    }
    if (device.vfioBound) {
      if (!device.mdev) {
        fs.link(`${dir}/driver`, `${toSys}bus/pci/drivers/vfio-pci`);
        // The driver lists its devices, as /sys/bus/pci/drivers/<driver>/<bdf> links do.
        fs.link(`/sys/bus/pci/drivers/vfio-pci/${device.name}`, `../../../../${dir.slice('/sys/'.length)}`);
      }
      fs.mkdir(`${dir}/vfio-dev/vfio${device.cdev}`);
      fs.attr(`${dir}/vfio-dev/vfio${device.cdev}/dev`, () => `511:${device.cdev}\n`);
      if (features.cdev) fs.chr(`/dev/vfio/devices/vfio${device.cdev}`, () => new VfioDeviceFile(kernel, device, 'cdev'));
    }
  }
}
