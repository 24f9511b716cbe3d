// A folder for one test file's sockets, inside the QEMU root so that QEMU (chrooted) and the
// host side (the test, the device server) reach the same files under two names.

import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { QemuPeerError } from './peer-error.js';
import { tierRootDir } from './paths.js';

/** The longest path a Unix socket address holds (sun_path is 108 bytes with its NUL). */
const SUN_PATH_MAX = 107;
const RUNS = 'run/vmmkit';

/**
 * One run folder, `<root>/run/vmmkit/<pid>-XXXXXX`. Whoever creates it removes it (`remove`);
 * folders of processes that died without removing theirs are swept when the next one is made.
 */
export class RunDir {
  private constructor(
    /** The folder as the host sees it. */
    readonly hostPath: string,
    /** The same folder as QEMU in the root sees it. */
    readonly rootPath: string,
  ) {}

  static create(root = tierRootDir()): RunDir {
    const runs = join(root, RUNS);
    if (!existsSync(root)) throw new QemuPeerError(`no QEMU root at ${root}: run tools/vfio-user-tier/prepare.sh`);
    mkdirSync(runs, { recursive: true });
    sweepStale(runs);
    const host = mkdtempSync(join(runs, `${process.pid}-`));
    return new RunDir(host, `/${RUNS}/${host.slice(runs.length + 1)}`);
  }

  /** A socket's path on the host, checked against the Unix address limit. */
  hostSocket(name: string): string {
    const path = join(this.hostPath, name);
    if (Buffer.byteLength(path) > SUN_PATH_MAX) {
      throw new QemuPeerError(`socket path ${path} is longer than ${SUN_PATH_MAX} bytes: set VMMKIT_VFIO_USER_TIER_CACHE to a shorter folder`);
    }
    return path;
  }

  /** The same socket's path for QEMU. */
  rootSocket(name: string): string {
    return `${this.rootPath}/${name}`;
  }

  /** Removes the folder and whatever sockets are left in it. */
  remove(): void {
    rmSync(this.hostPath, { recursive: true, force: true });
  }
}

/** Removes the run folders of processes that no longer exist. */
function sweepStale(runs: string): void {
  for (const name of readdirSync(runs)) {
    const pid = Number(name.split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && !alive(pid)) rmSync(join(runs, name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
