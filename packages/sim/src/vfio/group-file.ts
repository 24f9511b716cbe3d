// An open /dev/vfio/<group> (drivers/vfio/group.c): opened once, and never while a device of the
// group is bound through its cdev; set to a container or to an iommufd (its VFIO compat
// container); hands out device fds.

import {
  VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, vfio_group_status,
} from '@vmmkit/core/uapi';
import { dmaOwnerClaimed } from '../iommufd/dma-owner.js';
import { IommufdFile } from '../iommufd/iommufd-file.js';
import { compatCreateIoas } from '../iommufd/vfio-compat.js';
import { fail } from '../kernel/sim-errno.js';
import { SimFile, type IoctlArg } from '../kernel/sim-file.js';
import type { SimGroup } from '../kernel/sim-group.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { UserArg } from '../kernel/user-arg.js';
import { VfioContainerFile } from './container-file.js';
import { openGroupDevice } from './group-device.js';
import { groupState } from './group-state.js';

export class VfioGroupFile extends SimFile {
  readonly kind = 'vfio-group' as const;
  container: VfioContainerFile | undefined;
  iommufd: IommufdFile | undefined;
  /** Devices opened in container mode: each holds this file (container_users - 1). */
  containerUsers = 0;
  #registered = false;

  /** vfio_group_fops_open: ENODEV without vfio devices, EBUSY if open or cdev-bound. */
  constructor(
    readonly kernel: SimKernel,
    readonly group: SimGroup,
  ) {
    super();
    const state = groupState(group);
    if (!group.devices.some((d) => d.vfioBound)) fail('ENODEV', `group ${group.id} has no vfio device`);
    if (state.cdevBound) fail('EBUSY', `a device of group ${group.id} is bound through its cdev`);
    if (state.opened) fail('EBUSY', `group ${group.id} is already open`);
  }

  /** The open takes effect with the fd's reference (the fd table may still refuse it). */
  override ref(): this {
    if (!this.#registered) {
      groupState(this.group).opened = this;
      this.#registered = true;
    }
    return super.ref();
  }

  override ioctl(request: number, arg: IoctlArg): number {
    switch (request) {
      case VFIO_GROUP_GET_STATUS:
        return this.#status(UserArg.of(arg, this.kernel.memory));
      case VFIO_GROUP_SET_CONTAINER:
        return this.#setContainer(UserArg.of(arg, this.kernel.memory).s32(0));
      case VFIO_GROUP_UNSET_CONTAINER:
        return this.#unsetContainer();
      case VFIO_GROUP_GET_DEVICE_FD:
        return openGroupDevice(this, readName(UserArg.of(arg, this.kernel.memory)));
      default:
        return fail('ENOTTY', `request 0x${request.toString(16)} is not a group ioctl`);
    }
  }

  get hasIommu(): boolean {
    return this.container !== undefined || this.iommufd !== undefined;
  }

  /** VFIO_GROUP_GET_STATUS: VIABLE when set, or when nobody (host drivers included) owns the group's DMA. */
  #status(user: UserArg): number {
    const status = vfio_group_status.decode(user.read(0, vfio_group_status.size));
    if (status.argsz < vfio_group_status.size) fail('EINVAL', `argsz ${status.argsz} is below ${vfio_group_status.size}`);
    let flags = 0;
    if (this.hasIommu) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (!dmaOwnerClaimed(this.group)) flags = VFIO_GROUP_FLAGS_VIABLE;
    user.write(0, vfio_group_status.encode({ argsz: status.argsz, flags }));
    return 0;
  }

  /**
   * VFIO_GROUP_SET_CONTAINER: EBADF for a closed fd, EINVAL if already set, EBADFD for a file that
   * is neither a container nor an iommufd. A container claims the group (EPERM if not viable).
   */
  #setContainer(fd: number): number {
    const file = this.kernel.fds.get(fd);
    if (this.hasIommu) fail('EINVAL', `group ${this.group.id} is already set to a container`);
    if (file instanceof VfioContainerFile) {
      file.attachGroup(this.group);
      this.container = file;
    } else if (file instanceof IommufdFile) {
      compatCreateIoas(file);
      this.iommufd = file.ref();
    } else {
      fail('EBADFD', `fd ${fd} is neither a VFIO container nor an iommufd`);
    }
    this.kernel.census.add('group_attach');
    return 0;
  }

  /** VFIO_GROUP_UNSET_CONTAINER: EINVAL if not set; EBUSY while its devices use a container. */
  #unsetContainer(): number {
    if (!this.hasIommu) fail('EINVAL', `group ${this.group.id} is not set to a container`);
    if (this.container && this.containerUsers) fail('EBUSY', `devices of group ${this.group.id} are open`);
    this.#detach();
    return 0;
  }

  #detach(): void {
    this.container?.detachGroup(this.group);
    this.iommufd?.unref();
    this.container = undefined;
    this.iommufd = undefined;
    this.kernel.census.remove('group_attach');
  }

  /** vfio_group_fops_release: device fds of a container hold this file, so none is open here. */
  protected override release(): void {
    if (this.hasIommu) this.#detach();
    groupState(this.group).opened = undefined;
  }
}

/** strndup_user(arg, PAGE_SIZE): the device name, NUL-terminated within a page (EINVAL if longer). */
function readName(user: UserArg): string {
  const bytes: number[] = [];
  for (let i = 0; i < 4096; i++) {
    const b = user.read(i, 1)[0]!;
    if (b === 0) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(b);
  }
  return fail('EINVAL', 'device name longer than a page');
}
