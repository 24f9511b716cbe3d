// The simulated kernel's global state: the fd table, the address space, the machine's IOMMUs,
// groups and devices, virtual time, the census and armed faults.

import { ArgumentError } from '@vmmkit/core';
import type { SimFeatures } from '../config.js';
import { SimFs } from '../fs/sim-fs.js';
import { UserMemory } from '../memory/user-memory.js';
import { Census } from './census.js';
import { FaultInjector } from './fault-injector.js';
import { FdTable } from './fd-table.js';
import { linuxSeries, type LinuxSeries } from './linux-series.js';
import type { SimDevice } from './sim-device.js';
import type { SimGroup } from './sim-group.js';
import type { SimIommu } from './sim-iommu.js';

export class SimKernel {
  readonly census = new Census();
  readonly faults = new FaultInjector();
  readonly memory: UserMemory;
  readonly fds: FdTable;
  readonly fs = new SimFs();
  readonly iommus = new Map<string, SimIommu>();
  readonly groups = new Map<number, SimGroup>();
  /** Devices by name (BDF, or UUID for an mdev). */
  readonly devices = new Map<string, SimDevice>();
  readonly features: Required<SimFeatures>;
  /** The Linux series modelled (SimHostConfig.kernel), set once as the machine is built. */
  linux: LinuxSeries = linuxSeries();
  #now = 0;

  constructor(features: SimFeatures = {}, fdLimit = 1024, transparentHugePages = false, process: { firstFd?: number; mappingBase?: bigint } = {}) {
    this.fds = new FdTable(fdLimit, process.firstFd);
    this.memory = new UserMemory(this.census, transparentHugePages, process.mappingBase);
    this.features = {
      iommufd: features.iommufd ?? true,
      vfioContainer: features.vfioContainer ?? true,
      cdev: features.cdev ?? true,
      selftest: features.selftest ?? true,
    };
  }

  /** Virtual time in milliseconds. */
  get now(): number {
    return this.#now;
  }

  /** Let `ms` of virtual time pass for every device. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new ArgumentError(`advance: ms must be >= 0, got ${ms}`);
    this.#now += ms;
    for (const device of this.devices.values()) device.model.advance?.(ms);
  }

  /** A device by BDF or UUID; throws a TypeError naming the unknown one (test hooks). */
  device(name: string): SimDevice {
    const device = this.devices.get(name) ?? this.devices.get(`0000:${name}`);
    if (!device) throw new ArgumentError(`SimHost: no device '${name}' (have: ${[...this.devices.keys()].join(', ') || 'none'})`);
    return device;
  }
}
