// Fault injection through the iommufd flows: a VMM's cdev + IOAS + dirty-tracking flow, the
// selftest mock flow, and a VFIO group on iommufd's compat container. Each ioctl fails in turn;
// the caller cleans up (or retries and finishes), and nothing leaks.

import { describe, expect, it } from 'vitest';
import {
  IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP,
  IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_IOAS_ALLOC, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_UNMAP, IOMMU_TEST_CMD, IOMMU_TEST_OP_MOCK_DOMAIN, MOCK_APERTURE_START,
  O_RDWR, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU, iommu_hwpt_alloc, iommu_ioas_alloc, iommu_ioas_copy, iommu_ioas_map, iommu_test_cmd,
  PROT_READ, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from '@vmmkit/core/uapi';
import {
  anon, call, Cdev, fails, groupDeviceFd, Iommufd, machine, mockDomain, mockSetDirty, PAGE, RW, runWithFault,
  setContainer, type FlowState, type FlowStep, type1Info,
} from './iommufd-helpers.js';

const IOVA = 0x100000n;

/** The iommufd and cdev wrappers each flow opened. */
const opened = new WeakMap<FlowState, { io?: Iommufd; cdev?: Cdev }>();

function wrappers(s: FlowState): { io?: Iommufd; cdev?: Cdev } {
  let w = opened.get(s);
  if (!w) opened.set(s, (w = {}));
  return w;
}

/** The flow's iommufd, opened on first use. */
function iommufd(s: FlowState): Iommufd {
  const w = wrappers(s);
  if (!w.io) {
    w.io = new Iommufd(s.host);
    s.fds.push(w.io.fd);
    s.v.iommufd = w.io.fd;
  }
  return w.io;
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

/** The cdev of 0000:00:03.0, opened on first use. */
function cdev(s: FlowState): Cdev {
  const w = wrappers(s);
  if (!w.cdev) {
    w.cdev = new Cdev(s.host, 0);
    s.fds.push(w.cdev.fd);
  }
  return w.cdev;
}

const num = (s: FlowState, name: string): number => Number(s.v[name]);

const CDEV_FLOW: FlowStep[] = [
  { name: 'IOAS_ALLOC', ioctl: IOMMU_IOAS_ALLOC, on: 'iommufd', run: (s) => (s.v.ioas = iommufd(s).ioasAlloc()) },
  { name: 'IOAS_MAP', ioctl: IOMMU_IOAS_MAP, on: 'iommufd', run: (s) => iommufd(s).map(num(s, 'ioas'), buffer(s, 'buf', 16n * PAGE), 16n * PAGE, IOVA) },
  { name: 'BIND', ioctl: VFIO_DEVICE_BIND_IOMMUFD, on: 'vfio-device', run: (s) => (s.v.devid = cdev(s).bind(num(s, 'iommufd'))) },
  { name: 'GET_HW_INFO', ioctl: IOMMU_GET_HW_INFO, on: 'iommufd', run: (s) => iommufd(s).hwInfo(num(s, 'devid')) },
  { name: 'ATTACH ioas', ioctl: VFIO_DEVICE_ATTACH_IOMMUFD_PT, on: 'vfio-device', run: (s) => cdev(s).attach(num(s, 'ioas')) },
  {
    name: 'HWPT_ALLOC', ioctl: IOMMU_HWPT_ALLOC, on: 'iommufd',
    run: (s) => (s.v.hwpt = iommufd(s).hwptAlloc(num(s, 'devid'), num(s, 'ioas'), IOMMU_HWPT_ALLOC_DIRTY_TRACKING)),
  },
  { name: 'ATTACH hwpt', ioctl: VFIO_DEVICE_ATTACH_IOMMUFD_PT, on: 'vfio-device', run: (s) => cdev(s).attach(num(s, 'hwpt')) },
  { name: 'SET_DIRTY_TRACKING', ioctl: IOMMU_HWPT_SET_DIRTY_TRACKING, on: 'iommufd', run: (s) => iommufd(s).setDirty(num(s, 'hwpt'), true) },
  {
    name: 'GET_DIRTY_BITMAP', ioctl: IOMMU_HWPT_GET_DIRTY_BITMAP, on: 'iommufd',
    run: (s) => iommufd(s).getDirty(num(s, 'hwpt'), IOVA, 16n * PAGE, PAGE, buffer(s, 'bitmap', PAGE)),
  },
  { name: 'IOVA_RANGES', ioctl: IOMMU_IOAS_IOVA_RANGES, on: 'iommufd', run: (s) => iommufd(s).ranges(num(s, 'ioas')) },
  {
    name: 'IOAS_COPY', ioctl: IOMMU_IOAS_COPY, on: 'iommufd',
    run: (s) => call(s.host, num(s, 'iommufd'), IOMMU_IOAS_COPY, iommu_ioas_copy, {
      flags: IOMMU_IOAS_MAP_FIXED_IOVA | RW, dst_ioas_id: num(s, 'ioas'), src_ioas_id: num(s, 'ioas'),
      length: 4n * PAGE, src_iova: IOVA, dst_iova: 0x200000n,
    }),
  },
  { name: 'IOAS_UNMAP', ioctl: IOMMU_IOAS_UNMAP, on: 'iommufd', run: (s) => iommufd(s).unmap(num(s, 'ioas'), IOVA, 16n * PAGE) },
  { name: 'DETACH', ioctl: VFIO_DEVICE_DETACH_IOMMUFD_PT, on: 'vfio-device', run: (s) => cdev(s).detach() },
  { name: 'DESTROY hwpt', ioctl: IOMMU_DESTROY, on: 'iommufd', run: (s) => iommufd(s).destroy(num(s, 'hwpt')) },
];

const SELFTEST_FLOW: FlowStep[] = [
  { name: 'IOAS_ALLOC', ioctl: IOMMU_IOAS_ALLOC, on: 'iommufd', run: (s) => (s.v.ioas = iommufd(s).ioasAlloc()) },
  {
    name: 'IOAS_MAP', ioctl: IOMMU_IOAS_MAP, on: 'iommufd',
    run: (s) => iommufd(s).map(num(s, 'ioas'), buffer(s, 'buf', 16n * PAGE), 16n * PAGE, MOCK_APERTURE_START),
  },
  {
    name: 'TEST_CMD mock domain', ioctl: IOMMU_TEST_CMD, on: 'iommufd',
    run: (s) => {
      const mock = mockDomain(iommufd(s), num(s, 'ioas'));
      [s.v.stdev, s.v.idev] = [mock.stdev, mock.idev];
    },
  },
  {
    name: 'HWPT_ALLOC', ioctl: IOMMU_HWPT_ALLOC, on: 'iommufd',
    run: (s) => (s.v.hwpt = iommufd(s).hwptAlloc(num(s, 'idev'), num(s, 'ioas'), IOMMU_HWPT_ALLOC_DIRTY_TRACKING)),
  },
  { name: 'SET_DIRTY_TRACKING', ioctl: IOMMU_HWPT_SET_DIRTY_TRACKING, on: 'iommufd', run: (s) => iommufd(s).setDirty(num(s, 'hwpt'), true) },
  {
    name: 'TEST_CMD dirty', ioctl: IOMMU_TEST_CMD, on: 'iommufd',
    run: (s) => {
      const bits = buffer(s, 'bits', PAGE);
      s.host.kernel.memory.write(bits, new Uint8Array([0xff, 0xff]));
      mockSetDirty(iommufd(s), num(s, 'hwpt'), 16n * PAGE, MOCK_APERTURE_START, 2048n, bits);
    },
  },
  {
    name: 'GET_DIRTY_BITMAP', ioctl: IOMMU_HWPT_GET_DIRTY_BITMAP, on: 'iommufd',
    run: (s) => iommufd(s).getDirty(num(s, 'hwpt'), MOCK_APERTURE_START, 16n * PAGE, 2048n, buffer(s, 'bitmap', PAGE)),
  },
  { name: 'DESTROY stdev', ioctl: IOMMU_DESTROY, on: 'iommufd', run: (s) => iommufd(s).destroy(num(s, 'stdev')) },
];

/** The group of 0000:00:03.0, opened once. */
function group(s: FlowState): number {
  if (s.v.group === undefined) {
    const fd = s.host.open('/dev/vfio/3', O_RDWR);
    s.fds.push(fd);
    s.v.group = fd;
  }
  return num(s, 'group');
}

const COMPAT_FLOW: FlowStep[] = [
  { name: 'SET_CONTAINER', ioctl: VFIO_GROUP_SET_CONTAINER, on: 'vfio-group', run: (s) => setContainer(s.host, group(s), iommufd(s).fd) },
  { name: 'SET_IOMMU', ioctl: VFIO_SET_IOMMU, on: 'iommufd', run: (s) => s.host.ioctl(iommufd(s).fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) },
  { name: 'GET_INFO', ioctl: VFIO_IOMMU_GET_INFO, on: 'iommufd', run: (s) => type1Info(s.host, iommufd(s).fd) },
  {
    name: 'MAP_DMA', ioctl: VFIO_IOMMU_MAP_DMA, on: 'iommufd',
    run: (s) => call(s.host, iommufd(s).fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
      vaddr: buffer(s, 'buf', 16n * PAGE), iova: IOVA, size: 16n * PAGE, flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
    }),
  },
  {
    name: 'GET_DEVICE_FD', ioctl: VFIO_GROUP_GET_DEVICE_FD, on: 'vfio-group',
    run: (s) => s.fds.push(groupDeviceFd(s.host, group(s), '0000:00:03.0')),
  },
  {
    name: 'UNMAP_DMA', ioctl: VFIO_IOMMU_UNMAP_DMA, on: 'iommufd',
    run: (s) => call(s.host, iommufd(s).fd, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, { iova: IOVA, size: 16n * PAGE }),
  },
  { name: 'UNSET_CONTAINER', ioctl: VFIO_GROUP_UNSET_CONTAINER, on: 'vfio-group', run: (s) => s.host.ioctl(group(s), VFIO_GROUP_UNSET_CONTAINER) },
];

describe.each([
  { flow: 'cdev + IOAS + dirty tracking', steps: CDEV_FLOW },
  { flow: 'selftest mock domain', steps: SELFTEST_FLOW },
  { flow: 'VFIO group on the compat container', steps: COMPAT_FLOW },
])('fault injection: $flow', ({ steps }) => {
  it.each(steps.map((step, i) => ({ name: step.name, i })))('a fault in $name: give up and clean up', ({ i }) => {
    runWithFault(() => machine(), steps, i, false);
  });

  it.each(steps.map((step, i) => ({ name: step.name, i })))('a fault in $name: retry and finish', ({ i }) => {
    runWithFault(() => machine(), steps, i, true);
  });
});

describe('a call that fails late (its result cannot be copied back)', () => {
  /** Issue `request` with the struct in read-only user memory: the kernel reads it, then fails to respond. */
  function readOnlyCall(s: { host: ReturnType<typeof machine> }, fd: number, request: number, bytes: Uint8Array): void {
    const ro = anon(s.host, PAGE, PROT_READ);
    ro.bytes.set(bytes);
    try {
      fails('EFAULT', () => s.host.ioctl(fd, request, ro.addr));
    } finally {
      ro.unmap();
    }
  }

  it('IOMMU_IOAS_ALLOC, IOMMU_HWPT_ALLOC and IOMMU_TEST_CMD abort the object and free its id', () => {
    const io = new Iommufd(machine());
    const start = io.host.census();
    readOnlyCall(io, io.fd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc.encode({}));
    expect(io.host.census()).toEqual(start);
    const ioas = io.ioasAlloc();
    expect(ioas).toBe(1); // the aborted id was freed
    const devid = new Cdev(io.host, 0).bind(io.fd);
    const before = io.host.census();
    readOnlyCall(io, io.fd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc.encode({ dev_id: devid, pt_id: ioas }));
    readOnlyCall(io, io.fd, IOMMU_TEST_CMD, iommu_test_cmd.encode({ op: IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas }));
    expect(io.host.census()).toEqual(before);
    expect(io.hwptAlloc(devid, ioas)).toBe(devid + 1);
  });

  it('VFIO_DEVICE_BIND_IOMMUFD unbinds and ATTACH detaches when out_devid / pt_id cannot be written', () => {
    const io = new Iommufd(machine());
    const ioas = io.ioasAlloc();
    const dev = new Cdev(io.host, 0);
    const start = io.host.census();
    readOnlyCall(io, dev.fd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd.encode({ iommufd: io.fd }));
    expect(io.host.census()).toEqual(start);
    dev.bind(io.fd);
    const bound = io.host.census();
    readOnlyCall(io, dev.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt.encode({ pt_id: ioas }));
    expect(io.host.census()).toEqual(bound);
    dev.attach(ioas);
  });

  it('but IOMMU_IOAS_MAP keeps its area when the IOVA cannot be returned: iommufd_ioas_map does not undo it', () => {
    const io = new Iommufd(machine());
    const ioas = io.ioasAlloc();
    const buf = anon(io.host, PAGE);
    readOnlyCall(io, io.fd, IOMMU_IOAS_MAP, iommu_ioas_map.encode({ ioas_id: ioas, user_va: buf.addr, length: PAGE, flags: RW }));
    expect(io.unmap(ioas, 0n, (1n << 64n) - 1n)).toBe(PAGE);
  });
});
