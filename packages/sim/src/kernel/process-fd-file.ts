// A descriptor of the real process adopted into the simulated kernel: what a client passed over
// a real socket (SCM_RIGHTS) to a VMM whose host is simulated. The simulated kernel cannot do
// anything with the real file but name it (/proc/self/fd) and, when its last reference goes,
// close it: the real fd lives exactly as long as the simulated one.

import { readlinkSync } from 'node:fs';
import { closeReceivedFds } from '@vmmkit/core';
import type { Census } from './census.js';
import { SimFile } from './sim-file.js';

export class ProcessFdFile extends SimFile {
  readonly kind = undefined;
  /** What the real /proc/self/fd link names (a path, or `anon_inode:[...]`, `socket:[...]`). */
  readonly target: string;

  constructor(readonly realFd: number, private readonly census: Census) {
    super();
    this.target = readlinkSync(`/proc/self/fd/${realFd}`);
    census.add('process_fd');
  }

  protected override release(): void {
    this.census.remove('process_fd');
    closeReceivedFds([this.realFd]);
  }
}
