// Where the tier's prepared root lives: the same defaults as tools/vfio-user-tier/lib.sh.

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** tools/vfio-user-tier/ in this checkout. */
export const TIER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The checkout's root. */
export const PROJECT_DIR = join(TIER_DIR, '..', '..');

/** The cache prepare.sh fills (VMMKIT_VFIO_USER_TIER_CACHE, else ~/.cache/vmmkit-vfio-user-tier). */
export function tierCacheDir(): string {
  const cache = process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return process.env['VMMKIT_VFIO_USER_TIER_CACHE'] || join(cache, 'vmmkit-vfio-user-tier');
}

/** The Debian trixie root QEMU runs in. */
export function tierRootDir(): string {
  return join(tierCacheDir(), 'root');
}

/** The QEMU version line prepare.sh recorded, or undefined when the root is not prepared. */
export function preparedQemuVersion(): string | undefined {
  const stamp = join(tierRootDir(), '.vmmkit-vfio-user-root');
  return existsSync(stamp) ? readFileSync(stamp, 'utf8').split('\n')[1] : undefined;
}
