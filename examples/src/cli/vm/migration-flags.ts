// VFIO_MIGRATION_* flags by name (include/uapi/linux/vfio.h), for reports.

import { VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY } from '@vmmkit/core/uapi';

const NAMES: readonly [number, string][] = [
  [VFIO_MIGRATION_STOP_COPY, 'STOP_COPY'],
  [VFIO_MIGRATION_P2P, 'P2P'],
  [VFIO_MIGRATION_PRE_COPY, 'PRE_COPY'],
];

/** The names of the flags set in `flags` (unknown bits as hex). */
export function migrationFlagNames(flags: number): string[] {
  const names = NAMES.filter(([bit]) => flags & bit).map(([, name]) => name);
  const unknown = NAMES.reduce((rest, [bit]) => rest & ~bit, flags);
  return unknown ? [...names, `0x${unknown.toString(16)}`] : names;
}
