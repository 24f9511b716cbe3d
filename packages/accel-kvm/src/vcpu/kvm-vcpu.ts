// A vCPU: its fd and mmapped kvm_run, and the worker thread that loops on KVM_RUN. The main
// thread answers the worker's exits (port I/O and MMIO to the VM's devices) and decides whether
// it runs: pause sets immediate_exit and kicks the thread with a signal, and the worker parks
// once KVM_RUN returns EINTR, with every pending access completed and its state consistent.

import { Worker } from 'node:worker_threads';
import { FirstFailure, MAX_VIEW_LENGTH, type HostKernel, type HostMapping } from '@vmmkit/core';
import {
  KVM_CREATE_VCPU, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN, KVM_RUN, MAP_SHARED, PROT_READ, PROT_WRITE, kvm_run, kvm_run_io, kvm_run_mmio,
} from '@vmmkit/core/uapi';
import { KvmError, VcpuStoppedError } from '../kvm-errors.js';
import type { IoHandler } from './io-handler.js';
import { kickSignals, kickThread, koffiPath } from './thread-signals.js';
import { Ctl, Reply, Req, VcpuChannel } from './vcpu-channel.js';
import { vcpuWorkerMain, type KvmRunOffsets, type VcpuWorkerData } from './vcpu-worker-main.js';

/** Where the vCPU is, as the main thread sees it. */
export type VcpuRunState = 'starting' | 'running' | 'parked' | 'halted' | 'stopped';

/** kvm_run's fields as the worker needs them, from the uAPI table. */
const KVM_RUN_OFFSETS: KvmRunOffsets = (() => {
  const m = kvm_run.members;
  const io = m.io.offset;
  const mmio = m.mmio.offset;
  return {
    immediateExit: m.immediate_exit.offset, exitReason: m.exit_reason.offset,
    ioDirection: io + kvm_run_io.members.direction.offset, ioSize: io + kvm_run_io.members.size.offset,
    ioPort: io + kvm_run_io.members.port.offset, ioCount: io + kvm_run_io.members.count.offset,
    ioDataOffset: io + kvm_run_io.members.data_offset.offset,
    mmioPhysAddr: mmio + kvm_run_mmio.members.phys_addr.offset, mmioData: mmio + kvm_run_mmio.members.data.offset,
    mmioLen: mmio + kvm_run_mmio.members.len.offset, mmioIsWrite: mmio + kvm_run_mmio.members.is_write.offset,
    exitDetail: m.fail_entry.offset,
  };
})();
const IMMEDIATE_EXIT = KVM_RUN_OFFSETS.immediateExit;
/** Atomics.waitAsync (ES2024; Node 20 has it, the ES2022 lib does not declare it). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync;
const EXIT_NAMES: Record<number, string> = { [KVM_EXIT_SHUTDOWN]: 'shutdown', [KVM_EXIT_FAIL_ENTRY]: 'fail-entry', [KVM_EXIT_INTERNAL_ERROR]: 'internal-error' };

export class KvmVcpu {
  readonly #channel = new VcpuChannel();
  readonly #run: HostMapping;
  #worker: Worker | undefined;
  #state: VcpuRunState = 'starting';
  /** What the VMM wants: run the guest, stay parked, or end the worker. */
  #want: 'run' | 'pause' | 'quit' = 'pause';
  /** The request the worker waits on while parked or halted. */
  #parkedSeq = 0;
  #waiters: (() => void)[] = [];
  #exited: Promise<void> | undefined;
  #error: VcpuStoppedError | undefined;
  #closed = false;

  private constructor(
    readonly host: HostKernel,
    readonly index: number,
    readonly fd: number,
    run: HostMapping,
    private readonly io: IoHandler,
    /** Told once when the vCPU stops for good on its own (not by close). */
    private readonly onStopped: (e: VcpuStoppedError) => void,
  ) {
    this.#run = run;
  }

  /**
   * Create vCPU `index` on `vmFd` and map its kvm_run; the worker thread is started by `start`.
   * @throws KvmError naming the step; what was made is released.
   */
  static create(host: HostKernel, vmFd: number, index: number, mmapSize: number, io: IoHandler, onStopped: (e: VcpuStoppedError) => void): KvmVcpu {
    kickSignals();
    const fd = KvmError.wrap(`create vCPU ${index}`, () => host.ioctl(vmFd, KVM_CREATE_VCPU, index));
    try {
      if (mmapSize > MAX_VIEW_LENGTH) throw new KvmError(`map vCPU ${index}'s kvm_run`, `${mmapSize} bytes`);
      const run = KvmError.wrap(`map vCPU ${index}'s kvm_run`, () => host.mmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n));
      return new KvmVcpu(host, index, fd, run, io, onStopped);
    } catch (e) {
      host.close(fd);
      throw e;
    }
  }

  get state(): VcpuRunState {
    return this.#state;
  }

  /** Why the vCPU stopped on its own, if it did. */
  get error(): VcpuStoppedError | undefined {
    return this.#error;
  }

  /** Exits the worker has seen (all kinds). */
  get exits(): number {
    return Atomics.load(this.#channel.ctl, Ctl.EXITS);
  }

  /** Start the worker thread; it stays parked until `resume`. */
  start(): void {
    if (this.#worker) return;
    const data: VcpuWorkerData = {
      koffiPath, buffer: this.#channel.buffer, dataOffset: VcpuChannel.dataOffset, fd: this.fd,
      runAddr: this.#run.addr, runSize: this.#run.length, KVM_RUN,
      ctl: Ctl, req: Req, reply: Reply,
      exits: { IO: KVM_EXIT_IO, MMIO: KVM_EXIT_MMIO, HLT: KVM_EXIT_HLT, INTR: KVM_EXIT_INTR },
      at: KVM_RUN_OFFSETS,
    };
    const worker = new Worker(`(${vcpuWorkerMain.toString()})(require('node:worker_threads').workerData, require)`, {
      eval: true, workerData: data, name: `vcpu-${this.index}`,
    });
    this.#worker = worker;
    this.#exited = new Promise<void>((resolve) => {
      worker.on('error', (e) => this.#stop(new VcpuStoppedError(this.index, 'run-failed', `worker thread failed: ${e.message}`, { cause: e })));
      worker.on('exit', () => {
        if (this.#state !== 'stopped') this.#stop(undefined);
        // Wake the pump so that it sees the end.
        Atomics.notify(this.#channel.ctl, Ctl.REQ_SEQ);
        resolve();
      });
    });
    void this.#pump();
  }

  /** Let the guest run (from parked or halted). */
  resume(): void {
    if (this.#closed || this.#want === 'quit') return;
    this.#want = 'run';
    if (this.#state === 'parked' || this.#state === 'halted') {
      this.#run.bytes[IMMEDIATE_EXIT] = 0;
      this.#state = 'running';
      this.#reply(this.#parkedSeq, Reply.RUN);
    }
  }

  /** Stop the guest: resolves once the vCPU is parked (or halted, or stopped). */
  pause(): Promise<void> {
    if (this.#want !== 'quit') this.#want = 'pause';
    if (this.#state !== 'running') return this.whenStill();
    this.#run.bytes[IMMEDIATE_EXIT] = 1;
    const tid = Atomics.load(this.#channel.ctl, Ctl.TID);
    if (tid > 0) kickThread(tid);
    return this.whenStill();
  }

  /** Resolves when the vCPU is not running guest code (parked, halted, stopped, or not started). */
  whenStill(): Promise<void> {
    if (this.#state !== 'running') return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Stop the worker, unmap kvm_run and close the vCPU fd. Carries on through failures; throws
   * the first.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#want = 'quit';
    if (this.#state === 'running') {
      this.#run.bytes[IMMEDIATE_EXIT] = 1;
      const tid = Atomics.load(this.#channel.ctl, Ctl.TID);
      if (tid > 0) kickThread(tid);
    } else if ((this.#state === 'parked' || this.#state === 'halted') && this.#parkedSeq) {
      this.#reply(this.#parkedSeq, Reply.QUIT);
    }
    // A worker still starting sees QUIT when it asks (READY), as does one that parks now.
    await this.#exited;
    const failures = new FirstFailure();
    failures.run(() => this.#run.unmap());
    failures.run(() => this.host.close(this.fd));
    failures.rethrow();
  }

  /** Answer the worker's requests until it ends. */
  async #pump(): Promise<void> {
    const ctl = this.#channel.ctl;
    let seen = 0;
    while (this.#state !== 'stopped') {
      const w = waitAsync(ctl, Ctl.REQ_SEQ, seen);
      if (w.async) await w.value;
      const seq = Atomics.load(ctl, Ctl.REQ_SEQ);
      if (seq === seen) continue;
      seen = seq;
      await this.#handle(seq);
    }
  }

  async #handle(seq: number): Promise<void> {
    const ctl = this.#channel.ctl;
    switch (ctl[Ctl.KIND]) {
      case Req.IO:
      case Req.MMIO:
        // The worker waits in the exit until the device has answered, however long it takes.
        await this.#access(ctl[Ctl.KIND] === Req.IO);
        this.#reply(seq, Reply.RUN);
        return;
      case Req.READY:
      case Req.PARKED:
      case Req.HALTED:
        this.#parkedSeq = seq;
        this.#state = ctl[Ctl.KIND] === Req.HALTED ? 'halted' : 'parked';
        // Parked with nothing asked of it (a stray signal, or started while the VM runs): go on.
        if (this.#want === 'run' && ctl[Ctl.KIND] !== Req.HALTED) {
          this.#state = 'running';
          this.#reply(seq, Reply.RUN);
          return;
        }
        if (this.#want === 'quit') this.#reply(seq, Reply.QUIT);
        this.#wake();
        return;
      case Req.STOPPED: {
        const reason = ctl[Ctl.EXIT_REASON]!;
        const name = EXIT_NAMES[reason];
        const detail = (BigInt(ctl[Ctl.DETAIL_HI]! >>> 0) << 32n) | BigInt(ctl[Ctl.DETAIL_LO]! >>> 0);
        const e = name
          ? new VcpuStoppedError(this.index, name as 'shutdown', `KVM exit ${reason} (detail 0x${detail.toString(16)})`)
          : new VcpuStoppedError(this.index, 'unhandled-exit', `KVM exit reason ${reason} is not handled`);
        this.#stop(e);
        this.#reply(seq, Reply.QUIT);
        return;
      }
      case Req.RUN_FAILED:
        this.#stop(new VcpuStoppedError(this.index, 'run-failed', `KVM_RUN failed with errno ${ctl[Ctl.ERRNO]}`));
        this.#reply(seq, Reply.QUIT);
        return;
    }
  }

  /** One port I/O or MMIO access, handed to the devices (which may answer asynchronously). */
  async #access(pio: boolean): Promise<void> {
    const ctl = this.#channel.ctl;
    const size = ctl[Ctl.SIZE]!;
    const count = ctl[Ctl.COUNT]!;
    const write = ctl[Ctl.IS_WRITE] === 1;
    const data = this.#channel.data.subarray(0, size * count);
    const addr = (BigInt(ctl[Ctl.ADDR_HI]! >>> 0) << 32n) | BigInt(ctl[Ctl.ADDR_LO]! >>> 0);
    const access = { vcpu: this.index, addr, size, count, write, data };
    try {
      const claimed = await (pio ? this.io.pio(access) : this.io.mmio(access));
      if (!claimed && !write) data.fill(0xff);
    } catch (e) {
      // The access completes (reads see all ones) and the vCPU stops there.
      if (!write) data.fill(0xff);
      this.#error ??= new VcpuStoppedError(this.index, 'io-failed', `${pio ? 'port' : 'MMIO'} ${write ? 'write' : 'read'} at 0x${addr.toString(16)} failed`, { cause: e });
      this.#want = 'pause';
      this.#run.bytes[IMMEDIATE_EXIT] = 1;
      this.onStopped(this.#error);
    }
  }

  #reply(seq: number, reply: number): void {
    const ctl = this.#channel.ctl;
    ctl[Ctl.REPLY] = reply;
    Atomics.store(ctl, Ctl.RESP_SEQ, seq);
    Atomics.notify(ctl, Ctl.RESP_SEQ);
  }

  #stop(e: VcpuStoppedError | undefined): void {
    const first = this.#state !== 'stopped';
    this.#state = 'stopped';
    if (e && !this.#error) {
      this.#error = e;
      if (first && !this.#closed) this.onStopped(e);
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
