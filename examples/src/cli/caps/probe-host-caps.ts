// Everything `vmmkit caps` reports, gathered in one pass over the host.

import type { CliHost } from '../vm/cli-host.js';
import { findVfioDevices } from './find-vfio-devices.js';
import type { HostCaps, VfioDeviceCaps } from './host-caps.js';
import { probeVfioDevice } from './probe-device.js';
import {
  IOMMUFD_PATH, VFIO_CONTAINER_PATH, probeIommufd, probeIommufdCompat, probeKvm, probeLegacyType1, probeNode,
} from './probe-nodes.js';

/** Probe the host: its nodes, backends, KVM, and each VFIO device (one throwaway VMM at a time). */
export async function probeHostCaps(host: CliHost): Promise<HostCaps> {
  const kernel = host.kernel;
  const backends = [probeLegacyType1(kernel), probeIommufd(kernel), probeIommufdCompat(kernel)];
  const usable = {
    legacy: backends.some((b) => b.id === 'legacy-type1' && b.usable),
    iommufd: backends.some((b) => b.id === 'iommufd' && b.usable),
  };
  const devices: VfioDeviceCaps[] = [];
  for (const entry of findVfioDevices(kernel)) devices.push(await probeVfioDevice(kernel, entry, usable));
  return {
    host: host.kind,
    nodes: [probeNode(kernel, IOMMUFD_PATH), probeNode(kernel, VFIO_CONTAINER_PATH)],
    backends,
    kvm: probeKvm(kernel),
    devices,
  };
}
