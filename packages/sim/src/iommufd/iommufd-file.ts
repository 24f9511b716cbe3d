// An open /dev/iommu: one iommufd context (struct iommufd_ctx, drivers/iommu/iommufd/main.c) with
// its object table, the ioctl dispatch of iommufd_fops_ioctl, and the kernel-internal API that
// VFIO uses to bind and attach devices (iommufd_device_bind/attach, iommufd_access_*).

import { IOMMUFD_CMD_BASE } from '@vmmkit/core/uapi';
import type { SimDevice } from '../kernel/sim-device.js';
import { fail } from '../kernel/sim-errno.js';
import { SimFile, type IoctlArg } from '../kernel/sim-file.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { UserArg } from '../kernel/user-arg.js';
import { Access } from './access.js';
import { changePt, detachPt } from './device-attach.js';
import { Idev, type IGroup } from './idev.js';
import { Ioas } from './ioas.js';
import { machineClient } from './iommu-unit.js';
import { iommufdOps } from './iommufd-ops.js';
import { ObjectTable } from './object-table.js';
import { Ucmd } from './ucmd.js';
import { vfioCompatIoctl } from './vfio-compat.js';

/** A device binding: a physical device's iommufd_device, or an mdev's iommufd_access. */
type Binding = Idev | Access;

export class IommufdFile extends SimFile {
  readonly kind = 'iommufd' as const;
  readonly objects = new ObjectTable();
  /** iommufd_groups by IOMMU group, for the devices bound here. */
  readonly igroups = new Map<object, IGroup>();
  /** The IOAS the VFIO compatibility ioctls work on (ictx->vfio_ioas). */
  vfioIoas: Ioas | undefined;
  /** IOMMU_OPTION_RLIMIT_MODE: pinned pages are charged to the user (0) or the mm (1). */
  accountMode: 'user' | 'mm' = 'user';
  /** Devices bound to this context through VFIO. */
  readonly #bindings = new Map<SimDevice, Binding>();

  constructor(readonly kernel: SimKernel) {
    super();
  }

  /**
   * iommufd_fops_ioctl: numbers below the iommufd range (and past its table) go to the VFIO
   * compat container; a known number reads the struct by its size rules; anything else is ENOTTY.
   */
  override ioctl(request: number, arg: IoctlArg): number {
    const ops = iommufdOps(this.kernel.features.selftest);
    const index = (request & 0xff) - IOMMUFD_CMD_BASE;
    if (index < 0 || index >= ops.length) return vfioCompatIoctl(this, request, arg);
    const user = UserArg.of(arg, this.kernel.memory);
    const userSize = user.u32(0);
    const op = ops[index];
    if (!op || op.request !== request) return fail('ENOTTY', `request 0x${request.toString(16)} is not an iommufd ioctl`);
    return op.execute(this, Ucmd.read(user, userSize, op.struct, op.minSize));
  }

  // ---- the kernel-internal API (vfio's iommufd.c calls these) ---------------------------------

  /**
   * Bind a device (VFIO_DEVICE_BIND_IOMMUFD, or a group device opened on the compat container):
   * a PCI device becomes an iommufd_device (claiming its group's DMA: EPERM if owned elsewhere),
   * an mdev an access. Returns the object id (out_devid).
   */
  bindDevice(device: SimDevice): number {
    if (this.#bindings.has(device)) fail('EINVAL', `${device.name} is already bound`);
    const binding = device.mdev ? Access.create(this, device) : Idev.create(this, machineClient(device), true);
    this.#bindings.set(device, binding);
    return binding.id;
  }

  /** Undo a bind (the device fd closed): detaches first if attached. */
  unbindDevice(devid: number): void {
    const [device, binding] = this.#entry(devid);
    if (binding instanceof Idev && binding.attached) detachPt(this, binding);
    this.#bindings.delete(device);
    this.objects.destroy(binding);
  }

  /**
   * VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach (or, when attached, replace) to an IOAS (auto domain)
   * or a HWPT; an mdev takes an IOAS only (ENOENT otherwise). Returns the pt_id in use.
   */
  attachDevice(devid: number, ptId: number): number {
    const binding = this.#binding(devid);
    if (binding instanceof Access) {
      binding.attach(ptId);
      return ptId;
    }
    return changePt(this, binding, ptId, binding.attached);
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT: no-op when not attached. */
  detachDevice(devid: number): void {
    const binding = this.#binding(devid);
    if (binding instanceof Access) binding.detach();
    else if (binding.attached) detachPt(this, binding);
  }

  /** The devid of a device bound to this context (hot reset with DEV_ID), if any. */
  devidOf(device: SimDevice): number | undefined {
    return this.#bindings.get(device)?.id;
  }

  protected override release(): void {
    this.objects.releaseAll();
    this.vfioIoas = undefined;
  }

  #binding(devid: number): Binding {
    return this.#entry(devid)[1];
  }

  #entry(devid: number): [SimDevice, Binding] {
    for (const entry of this.#bindings) if (entry[1].id === devid) return entry;
    return fail('ENOENT', `no device bound with id ${devid}`);
  }
}
