// DMA ownership of IOMMU groups (drivers/iommu/iommu.c: iommu_group_claim_dma_owner and
// iommu_device_claim_dma_owner). A group whose devices are bound to host drivers is owned by the
// DMA API; a VFIO container claims a whole group; iommufd claims per device, sharing the group
// between devices bound to the same context.

import { InvariantError } from '@vmmkit/core';
import { fail } from '../kernel/sim-errno.js';
import { SimGroup } from '../kernel/sim-group.js';

interface Ownership {
  owner: unknown;
  count: number;
}

const owners = new WeakMap<object, Ownership>();

/** Host drivers own a group that is not viable (a device bound to something other than vfio). */
function hostOwned(group: object): boolean {
  return group instanceof SimGroup && !group.viable;
}

/** iommu_group_dma_owner_claimed: anyone (host drivers included) owns the group's DMA. */
export function dmaOwnerClaimed(group: object): boolean {
  return hostOwned(group) || owners.has(group);
}

/** iommu_group_claim_dma_owner (VFIO_GROUP_SET_CONTAINER): EPERM if anyone owns the group. */
export function claimGroup(group: object, owner: unknown): void {
  if (dmaOwnerClaimed(group)) fail('EPERM', 'the IOMMU group is already owned (a host driver, a container or an iommufd)');
  owners.set(group, { owner, count: 1 });
}

/** iommu_device_claim_dma_owner (iommufd bind): EPERM if another owner holds the group. */
export function claimDevice(group: object, owner: unknown): void {
  if (hostOwned(group)) fail('EPERM', 'a device of the IOMMU group is bound to a host driver');
  const current = owners.get(group);
  if (current && current.owner !== owner) fail('EPERM', 'the IOMMU group is owned by another user');
  if (current) current.count++;
  else owners.set(group, { owner, count: 1 });
}

/** Undo one claim. */
export function releaseDmaOwner(group: object): void {
  const current = owners.get(group);
  if (!current) throw new InvariantError('sim: DMA ownership released twice');
  if (--current.count === 0) owners.delete(group);
}
