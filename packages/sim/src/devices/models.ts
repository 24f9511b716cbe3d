// The built-in device models, by name, and the checks a device description must pass before a
// model is wired to it (what vfio-pci's probe would refuse).

import { ConfigError } from '@vmmkit/core';
import type { SimDeviceConfig } from '../config.js';
import { EduModel } from './edu.js';
import { MttyModel } from './mtty.js';
import { NicModel } from './nic.js';
import type { SimPciModel } from './pci-model.js';

const BUILT_IN: Record<string, (config: SimDeviceConfig) => SimPciModel> = {
  edu: (config) => new EduModel(config),
  nic: (config) => new NicModel(config),
  mtty: (config) => new MttyModel(config),
};

/** Create the model a device description asks for. Throws ConfigError on a description no driver would accept. */
export function createModel(config: SimDeviceConfig): SimPciModel {
  let model: SimPciModel;
  if (typeof config.model === 'function') model = config.model(config);
  else {
    const make = BUILT_IN[config.model];
    if (!make) {
      throw new ConfigError(`SimHost: unknown device model '${config.model}' (built in: ${Object.keys(BUILT_IN).join(', ') || 'none'})`);
    }
    model = make(config);
  }
  checkMigration(config, model);
  return model;
}

function checkMigration(config: SimDeviceConfig, model: SimPciModel): void {
  const name = config.bdf ?? config.uuid;
  const flags = config.migration?.flags ?? [];
  if (flags.length === 0) return;
  // vfio_pci_core_register_device refuses migration support without STOP_COPY.
  if (!flags.includes('STOP_COPY')) {
    throw new ConfigError(`SimHost: device '${name}': migration flags need STOP_COPY (got ${flags.join(', ')})`);
  }
  if (!model.migration) {
    throw new ConfigError(`SimHost: device '${name}': model '${model.kind}' has no migratable state, so it cannot offer migration`);
  }
}
