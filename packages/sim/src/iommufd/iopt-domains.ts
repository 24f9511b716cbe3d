// Domains, accesses and devices joining an IOAS's IOVA space: iopt_table_add_domain /
// remove_domain, iopt_add_access / remove_access, iopt_table_enforce_dev_resv_regions and the
// IOVA alignment they impose (drivers/iommu/iommufd/io_pagetable.c).

import { fail } from '../kernel/sim-errno.js';
import type { IoDomain } from './io-domain.js';
import type { IoPagetable } from './io-pagetable.js';
import { hex, PAGE_SIZE, U64_MAX, type IovaRange } from './iova-range.js';

/** Fill a new domain from the IOVA space: alignment, aperture reservations, pinning. All or nothing. */
export function addDomain(iopt: IoPagetable, domain: IoDomain): void {
  const alignment = domain.minPage > iopt.iovaAlignment ? domain.minPage : iopt.iovaAlignment;
  if (alignment > PAGE_SIZE) fail('EINVAL', `IO page size ${domain.minPage} exceeds PAGE_SIZE`);
  if (alignment !== iopt.iovaAlignment) checkAlignment(iopt, alignment);
  if (domain.unit.refusesNoAccess && [...iopt.areas].some(({ value: a }) => !a.prot.read && !a.prot.write)) {
    fail('EINVAL', `${domain.unit.name} cannot map the pages with no access of this IOAS`);
  }
  try {
    if (domain.aperture.start !== 0n) iopt.reserve(0n, domain.aperture.start - 1n, domain);
    if (domain.aperture.last !== U64_MAX) iopt.reserve(domain.aperture.last + 1n, U64_MAX, domain);
    iopt.pinAll();
  } catch (e) {
    iopt.unreserve(domain);
    throw e;
  }
  iopt.iovaAlignment = alignment;
  iopt.domains.add(domain);
}

/** Take a domain out (iopt_table_remove_domain): its IOPTEs and aperture reservations go. */
export function removeDomain(iopt: IoPagetable, domain: IoDomain): void {
  iopt.domains.delete(domain);
  domain.dirty.clear();
  iopt.unreserve(domain);
  recalcAlignment(iopt);
}

/** iopt_add_access: an access pins whole pages, so the IOVA space becomes PAGE_SIZE aligned. */
export function addAccess(iopt: IoPagetable, access: object): void {
  iopt.accesses.add(access);
  try {
    recalcAlignment(iopt);
  } catch (e) {
    iopt.accesses.delete(access);
    throw e;
  }
}

export function removeAccess(iopt: IoPagetable, access: object): void {
  iopt.accesses.delete(access);
  recalcAlignment(iopt);
}

/** iopt_table_enforce_dev_resv_regions: reserve a device's regions (EADDRINUSE over a mapping). */
export function reserveDeviceRegions(iopt: IoPagetable, regions: readonly IovaRange[], owner: object): void {
  try {
    for (const r of regions) iopt.reserve(r.start, r.last, owner);
  } catch (e) {
    iopt.unreserve(owner);
    throw e;
  }
}

/** iopt_disable_large_pages: EINVAL once domains hold mappings. */
export function disableLargePages(iopt: IoPagetable): void {
  if (iopt.disableLargePages) return;
  if (iopt.domains.size && iopt.areas.size) fail('EINVAL', 'domains already map pages with large IOPTEs');
  iopt.disableLargePages = true;
  try {
    recalcAlignment(iopt);
  } catch (e) {
    iopt.disableLargePages = false;
    throw e;
  }
}

/** iopt_enable_large_pages: new mappings may use large IOPTEs again. */
export function enableLargePages(iopt: IoPagetable): void {
  iopt.disableLargePages = false;
  recalcAlignment(iopt);
}

/** iopt_calculate_iova_alignment: the largest smallest-page of the domains, PAGE_SIZE for accesses. */
function recalcAlignment(iopt: IoPagetable): void {
  let alignment = iopt.disableLargePages ? PAGE_SIZE : 1n;
  for (const d of iopt.domains) if (d.minPage > alignment) alignment = d.minPage;
  if (iopt.accesses.size && PAGE_SIZE > alignment) alignment = PAGE_SIZE;
  if (alignment > iopt.iovaAlignment) checkAlignment(iopt, alignment);
  iopt.iovaAlignment = alignment;
}

/** iopt_check_iova_alignment: every area must already conform (EADDRINUSE otherwise). */
function checkAlignment(iopt: IoPagetable, alignment: bigint): void {
  const mask = alignment - 1n;
  for (const { value: a } of iopt.areas) {
    if (a.start & mask || a.length & mask || (a.pages.uva + a.startByte) % PAGE_SIZE & mask) {
      fail('EADDRINUSE', `the area at ${hex(a.start)} does not conform to alignment ${alignment}`);
    }
  }
}
