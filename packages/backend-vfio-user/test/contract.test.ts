// The VfioIommuBackend contract on the vfio-user backend: edu servers in this process (SimHost)
// and in processes of their own over Unix sockets (LinuxHost). Where vfio-user differs, the
// capabilities say so: no kernel fd per device, a container per device, guest RAM only (a
// RAM block's file and offset go to the server), no IOMMU dirty tracking (the device logs its
// own DMA), and no ioctls to fail (the connection's failures are covered by
// proxy-failures.test.ts and fail-nth.test.ts).

import { describeVfioIommuContract, type VfioIommuContractCapabilities } from '@vmmkit/core/testing';
import { vfioUserContractHarness } from './support/contract-harness.js';

const CAPS: VfioIommuContractCapabilities = {
  // The server unmaps whole windows only and answers ENOENT for part of one, which the client
  // reads as "nothing to unmap", as for iommufd.
  partialUnmap: 'ignored',
  iommuDirtyTracking: false,
  dirtyReports: 'exact',
  noClear: false,
  hwCaps: false,
  // As QEMU's vfio-user: every device has a container (its connection) of its own.
  sharedContainer: false,
  multipleDevices: true,
  faultInjection: false,
  deviceFd: false,
  processMemory: false,
};

describeVfioIommuContract('vfio-user, edu servers in this process (SimHost)', CAPS, () => vfioUserContractHarness('in-process'));

describeVfioIommuContract(
  'vfio-user, edu servers in other processes over Unix sockets (LinuxHost)',
  CAPS,
  () => vfioUserContractHarness('processes'),
  process.platform === 'linux' ? undefined : 'not a Linux host',
);
