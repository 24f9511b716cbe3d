// Fault injection through a legacy VFIO flow (container + group + type1 + dirty pages, as a VMM's
// live migration does it): each ioctl fails in turn; the caller cleans up, or retries and
// finishes, and nothing leaks.

import { describe, it } from 'vitest';
import {
  O_RDWR, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU,
  vfio_group_status,
} from '@vmmkit/core/uapi';
import {
  anon, call, groupDeviceFd, Legacy, machine, PAGE, runWithFault, setContainer, type FlowState, type FlowStep,
  type1Info,
} from './iommufd-helpers.js';

const IOVA = 0x100000n;
const legacies = new WeakMap<FlowState, Legacy>();

/** The flow's container, opened on first use. */
function container(s: FlowState): Legacy {
  let legacy = legacies.get(s);
  if (!legacy) {
    legacy = new Legacy(s.host);
    s.fds.push(legacy.container);
    legacies.set(s, legacy);
  }
  return legacy;
}

/** The flow's group 3, opened on first use. */
function group(s: FlowState): number {
  if (s.v.group === undefined) {
    s.v.group = s.host.open('/dev/vfio/3', O_RDWR);
    s.fds.push(s.v.group);
  }
  return Number(s.v.group);
}

/** A mapping of the flow, made once. */
function buffer(s: FlowState, name: string, length: bigint): bigint {
  if (s.v[name] === undefined) {
    const m = anon(s.host, length);
    s.maps.push(m);
    s.v[name] = m.addr;
  }
  return BigInt(s.v[name]!);
}

const bitmap = (s: FlowState) => ({ pgsize: PAGE, size: 8n, data: buffer(s, 'bitmap', PAGE) });

const LEGACY_FLOW: FlowStep[] = [
  { name: 'GET_STATUS', ioctl: VFIO_GROUP_GET_STATUS, on: 'vfio-group', run: (s) => call(s.host, group(s), VFIO_GROUP_GET_STATUS, vfio_group_status) },
  { name: 'SET_CONTAINER', ioctl: VFIO_GROUP_SET_CONTAINER, on: 'vfio-group', run: (s) => setContainer(s.host, group(s), container(s).container) },
  { name: 'SET_IOMMU', ioctl: VFIO_SET_IOMMU, on: 'vfio-container', run: (s) => container(s).setIommu() },
  { name: 'GET_INFO', ioctl: VFIO_IOMMU_GET_INFO, on: 'vfio-container', run: (s) => type1Info(s.host, container(s).container) },
  { name: 'MAP_DMA', ioctl: VFIO_IOMMU_MAP_DMA, on: 'vfio-container', run: (s) => container(s).map(buffer(s, 'buf', 16n * PAGE), IOVA, 16n * PAGE) },
  { name: 'GET_DEVICE_FD', ioctl: VFIO_GROUP_GET_DEVICE_FD, on: 'vfio-group', run: (s) => s.fds.push(groupDeviceFd(s.host, group(s), '0000:00:03.0')) },
  { name: 'DIRTY_PAGES START', ioctl: VFIO_IOMMU_DIRTY_PAGES, on: 'vfio-container', run: (s) => container(s).dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START) },
  { name: 'DIRTY_PAGES GET_BITMAP', ioctl: VFIO_IOMMU_DIRTY_PAGES, on: 'vfio-container', run: (s) => container(s).getBitmap(IOVA, 16n * PAGE, bitmap(s)) },
  {
    name: 'UNMAP_DMA GET_DIRTY_BITMAP', ioctl: VFIO_IOMMU_UNMAP_DMA, on: 'vfio-container',
    run: (s) => container(s).unmap(IOVA, 16n * PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, bitmap(s)),
  },
  { name: 'DIRTY_PAGES STOP', ioctl: VFIO_IOMMU_DIRTY_PAGES, on: 'vfio-container', run: (s) => container(s).dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) },
];

/** The same, leaving the container before the device was opened. */
const UNSET_FLOW: FlowStep[] = [
  ...LEGACY_FLOW.slice(0, 5),
  { name: 'UNSET_CONTAINER', ioctl: VFIO_GROUP_UNSET_CONTAINER, on: 'vfio-group', run: (s) => s.host.ioctl(group(s), VFIO_GROUP_UNSET_CONTAINER) },
];

describe.each([
  { flow: 'container + group + type1 + dirty pages', steps: LEGACY_FLOW },
  { flow: 'container + group, then UNSET_CONTAINER', steps: UNSET_FLOW },
])('fault injection: $flow', ({ steps }) => {
  it.each(steps.map((step, i) => ({ name: step.name, i })))('a fault in $name: give up and clean up', ({ i }) => {
    runWithFault(() => machine(), steps, i, false);
  });

  it.each(steps.map((step, i) => ({ name: step.name, i })))('a fault in $name: retry and finish', ({ i }) => {
    runWithFault(() => machine(), steps, i, true);
  });
});
