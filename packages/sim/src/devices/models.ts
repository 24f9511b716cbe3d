// The built-in device models, by name.

import type { SimDeviceConfig } from '../config.js';
import type { SimPciModel } from './pci-model.js';

const BUILT_IN: Record<string, (config: SimDeviceConfig) => SimPciModel> = {};

/** Create the model a device description asks for. */
export function createModel(config: SimDeviceConfig): SimPciModel {
  if (typeof config.model === 'function') return config.model(config);
  const make = BUILT_IN[config.model];
  if (!make) {
    throw new TypeError(`SimHost: unknown device model '${config.model}' (built in: ${Object.keys(BUILT_IN).join(', ') || 'none'})`);
  }
  return make(config);
}
