// Kicking a vCPU out of KVM_RUN: a signal to its own thread (tgkill), with a native handler that
// does nothing, so that the signal only makes KVM_RUN return EINTR.
//
// Why this way: a JS function cannot be a signal handler (koffi callbacks run JS, which must not
// run in signal context), Node owns SIGUSR1 (the inspector), and without a handler SIGUSR2 would
// end the process. The handler is libc's own `getpid` (found with dlsym): on x86-64 it ignores
// the signal number it is called with, touches no state and is async-signal-safe. It is
// installed once per process, only where SIGUSR2 has no handler yet (SIG_DFL or SIG_IGN); a
// handler someone else installed works as well, since any handler interrupts KVM_RUN.

import { createRequire } from 'node:module';
import koffi from 'koffi';
import { KvmError } from '../kvm-errors.js';

/** The signal that kicks vCPU threads. */
export const SIG_KICK = 12; // SIGUSR2 on x86-64
/** sizeof(struct sigaction) in glibc on x86-64: handler, sa_mask (128), flags, restorer. */
const SIGACTION_SIZE = 152;
const SA_FLAGS_OFFSET = 136;

interface SignalLibc {
  readonly getpid: () => number;
  readonly tgkill: (tgid: number, tid: number, sig: number) => number;
}

let libc: SignalLibc | undefined;

/** The path koffi loads from, for workers to require the same module. */
export const koffiPath = createRequire(import.meta.url).resolve('koffi');

/** Install the no-op kick handler (once) and return the calls the kick needs. */
export function kickSignals(): SignalLibc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  const sigaction = lib.func('int sigaction(int sig, const void *act, void *oldact)');
  const dlsym = lib.func('void *dlsym(void *handle, const char *symbol)');
  const old = new Uint8Array(SIGACTION_SIZE);
  if (sigaction(SIG_KICK, null, old) < 0) throw new KvmError('install the vCPU kick handler', `sigaction: errno ${koffi.errno()}`);
  const handler = new DataView(old.buffer).getBigUint64(0, true);
  // 0 is SIG_DFL, 1 is SIG_IGN: neither interrupts KVM_RUN (SIG_IGN drops the signal, SIG_DFL kills).
  if (handler === 0n || handler === 1n) {
    const noop = dlsym(null, 'getpid');
    if (!noop) throw new KvmError('install the vCPU kick handler', 'dlsym(getpid) found nothing');
    const act = new Uint8Array(SIGACTION_SIZE);
    const view = new DataView(act.buffer);
    view.setBigUint64(0, BigInt(koffi.address(noop) as bigint), true);
    // sa_mask empty; sa_flags 0: no SA_RESTART (KVM_RUN never restarts anyway), no SA_SIGINFO.
    view.setInt32(SA_FLAGS_OFFSET, 0, true);
    if (sigaction(SIG_KICK, act, null) < 0) throw new KvmError('install the vCPU kick handler', `sigaction: errno ${koffi.errno()}`);
  }
  libc = {
    getpid: lib.func('int getpid(void)'),
    tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
  };
  return libc;
}

/** Signal thread `tid` of this process with the kick; a thread that has ended is no error. */
export function kickThread(tid: number): void {
  const s = kickSignals();
  s.tgkill(s.getpid(), tid, SIG_KICK);
}
