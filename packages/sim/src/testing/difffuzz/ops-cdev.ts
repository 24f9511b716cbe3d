// The differential fuzzer's device cdev operations (drivers/vfio/device_cdev.c): opening
// /dev/vfio/devices/vfio<N>, binding it to an iommufd, attaching it to an IOAS or HWPT and
// detaching it, with malformed structs and flags.

import {
  VFIO_DEVICE_BIND_FLAG_TOKEN, vfio_device_bind_iommufd_7_2, O_RDWR, VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt,
  vfio_device_detach_iommufd_pt,
} from '@vmmkit/core/uapi';
import { attempt, decoded, plain, sized } from './call.js';
import type { OpSpec } from './gen.js';
import { ioctlStruct, SCRATCH, type A } from './ops-iommufd.js';

const openCdev: OpSpec = {
  name: 'cdev.open', family: 'cdev', weight: 4, makes: { fd: 'device' },
  gen: (g) => ({ dev: g.rng.weighted<number>([[0, 45], [1, 30], [2, 25]]) }),
  run(r, s) {
    const dev = r.machine.devices[s.a.dev as number]!;
    const o = attempt(() => r.host.open(dev.cdev, O_RDWR));
    return o.r === 'ok' ? { r: 'ok', v: r.madeFd(s.id, 'fd', o.v, dev.mdev) } : { r: o.r };
  },
};

const bind: OpSpec = {
  name: 'cdev.bind', family: 'cdev', weight: 6, makes: { out_devid: 'devid' },
  gen: (g) => ({
    device: g.ref('device'), iommufd: g.ref(g.rng.chance(0.9) ? 'iommufd' : 'container'), flags: g.flags([VFIO_DEVICE_BIND_FLAG_TOKEN], 1 << 4),
    token: g.bad(0.2) ? 'bad' : 'uuid', argsz: g.clean ? g.rng.pick([16, 24]) : g.rng.weighted<number | 'tail'>([[16, 30], [24, 20], [12, 15], [32, 15], ['tail', 20]]),
  }),
  run(r, s) {
    const a = s.a as A;
    // A VF token UUID in scratch (all zeros), or a pointer to nothing.
    const token = a.token === 'uuid' ? r.ptr({ buf: 'scratch', off: SCRATCH.misc }) : 0x1000n;
    const tail = a.argsz === 'tail'; // 32 bytes with a non-zero one past the 7.x struct
    const bytes = new Uint8Array(96);
    bytes.set(vfio_device_bind_iommufd_7_2.encode({ argsz: tail ? 32 : a.argsz, flags: a.flags, iommufd: r.fd(a.iommufd), token_uuid_ptr: token }));
    if (tail) bytes[28] = 1;
    const { outcome } = ioctlStruct(r, a.device, VFIO_DEVICE_BIND_IOMMUFD, bytes);
    return plain(outcome, outcome.r === 'ok' ? { out_devid: r.madeId(s.id, 'out_devid', decoded(vfio_device_bind_iommufd_7_2, bytes).out_devid) } : undefined);
  },
};

const attach: OpSpec = {
  name: 'cdev.attach', family: 'cdev', weight: 7, makes: { pt_id: 'hwpt' },
  gen: (g) => ({ device: g.ref('device'), pt: g.ref(g.rng.chance(0.65) ? 'ioas' : 'hwpt'), flags: g.bad(0.05) ? 2 : 0, size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(vfio_device_attach_iommufd_pt, { pt_id: r.id(a.pt), flags: a.flags }, a.size, 'argsz');
    const { outcome } = ioctlStruct(r, a.device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, bytes);
    return plain(outcome, outcome.r === 'ok' ? { pt_id: r.madeId(s.id, 'pt_id', decoded(vfio_device_attach_iommufd_pt, bytes).pt_id) } : undefined);
  },
};

const detach: OpSpec = {
  name: 'cdev.detach', family: 'cdev', weight: 3,
  gen: (g) => ({ device: g.ref('device'), flags: g.bad(0.05) ? 2 : 0, size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    return plain(ioctlStruct(r, a.device, VFIO_DEVICE_DETACH_IOMMUFD_PT, sized(vfio_device_detach_iommufd_pt, { flags: a.flags }, a.size, 'argsz')).outcome);
  },
};

export const CDEV_OPS: readonly OpSpec[] = [openCdev, bind, attach, detach];
