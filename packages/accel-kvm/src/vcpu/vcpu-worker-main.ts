// The body of a vCPU's worker thread: KVM_RUN in a loop, each exit the VMM must see sent to the
// main thread as one synchronous round trip over the channel. It runs as the source of this
// function in a worker (eval), so it uses nothing from outside but what `data` carries and
// `require`: koffi (by resolved path) for synchronous libc calls on this very thread — koffi's
// async calls hop between pool threads, and a vCPU is kicked by signalling its own thread.

/** What the worker is given. */
export interface VcpuWorkerData {
  readonly koffiPath: string;
  readonly buffer: SharedArrayBuffer;
  readonly dataOffset: number;
  readonly fd: number;
  /** kvm_run's address in this process and the mapping's length. */
  readonly runAddr: bigint;
  readonly runSize: number;
  readonly KVM_RUN: number;
  readonly ctl: Readonly<Record<string, number>>;
  readonly req: Readonly<Record<string, number>>;
  readonly reply: Readonly<Record<string, number>>;
  readonly exits: Readonly<Record<string, number>>;
  /** Offsets in kvm_run, from the uAPI table (kvmRunOffsets). */
  readonly at: KvmRunOffsets;
}

/** Where the worker reads and writes kvm_run. */
export interface KvmRunOffsets {
  readonly immediateExit: number;
  readonly exitReason: number;
  readonly ioDirection: number;
  readonly ioSize: number;
  readonly ioPort: number;
  readonly ioCount: number;
  readonly ioDataOffset: number;
  readonly mmioPhysAddr: number;
  readonly mmioData: number;
  readonly mmioLen: number;
  readonly mmioIsWrite: number;
  /** The exit union: FAIL_ENTRY's hardware reason and INTERNAL_ERROR's suberror both start it. */
  readonly exitDetail: number;
}

/** Runs in the worker; self-contained on purpose (see above). */
export function vcpuWorkerMain(d: VcpuWorkerData, load: (path: string) => any): void {
  const koffi = load(d.koffiPath);
  const libc = koffi.load('libc.so.6');
  const ioctl = libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)');
  const gettid = libc.func('int gettid(void)');
  const EINTR = 4;
  const C = d.ctl;
  const at = d.at;
  const ctl = new Int32Array(d.buffer, 0, 16);
  const data = new Uint8Array(d.buffer, d.dataOffset);
  const run = new Uint8Array(koffi.view(d.runAddr, d.runSize));
  const rv = new DataView(run.buffer, run.byteOffset, run.byteLength);

  /** Post a request of `kind` and wait for the main thread's reply. */
  const request = (kind: number): number => {
    ctl[C.KIND!] = kind;
    const seq = (Atomics.load(ctl, C.REQ_SEQ!) + 1) | 0;
    Atomics.store(ctl, C.REQ_SEQ!, seq);
    Atomics.notify(ctl, C.REQ_SEQ!);
    for (;;) {
      const seen = Atomics.load(ctl, C.RESP_SEQ!);
      if (seen === seq) return ctl[C.REPLY!]!;
      Atomics.wait(ctl, C.RESP_SEQ!, seen);
    }
  };

  ctl[C.TID!] = gettid();
  if (request(d.req.READY!) !== d.reply.RUN) return;
  for (;;) {
    const rc = ioctl(d.fd, d.KVM_RUN, 0);
    if (rc < 0) {
      const errno = koffi.errno();
      if (errno === EINTR) {
        // Stopped by immediate_exit or the kick: pending I/O is complete, the state consistent.
        run[at.immediateExit] = 0;
        if (request(d.req.PARKED!) !== d.reply.RUN) return;
        continue;
      }
      ctl[C.ERRNO!] = errno;
      request(d.req.RUN_FAILED!);
      return;
    }
    Atomics.add(ctl, C.EXITS!, 1);
    const reason = rv.getUint32(at.exitReason, true);
    if (reason === d.exits.IO) {
      const out = run[at.ioDirection] === 1;
      const size = run[at.ioSize]!;
      const count = rv.getUint32(at.ioCount, true);
      const offset = Number(rv.getBigUint64(at.ioDataOffset, true));
      const bytes = size * count;
      ctl[C.ADDR_LO!] = rv.getUint16(at.ioPort, true);
      ctl[C.ADDR_HI!] = 0;
      ctl[C.SIZE!] = size;
      ctl[C.COUNT!] = count;
      ctl[C.IS_WRITE!] = out ? 1 : 0;
      if (out) data.set(run.subarray(offset, offset + bytes));
      // The reply is always RUN: to stop, the main thread sets immediate_exit, and the next
      // KVM_RUN completes the access and parks.
      request(d.req.IO!);
      if (!out) run.set(data.subarray(0, bytes), offset);
    } else if (reason === d.exits.MMIO) {
      const write = run[at.mmioIsWrite] === 1;
      const len = rv.getUint32(at.mmioLen, true);
      const addr = rv.getBigUint64(at.mmioPhysAddr, true);
      ctl[C.ADDR_LO!] = Number(addr & 0xffffffffn) | 0;
      ctl[C.ADDR_HI!] = Number(addr >> 32n) | 0;
      ctl[C.SIZE!] = len;
      ctl[C.COUNT!] = 1;
      ctl[C.IS_WRITE!] = write ? 1 : 0;
      if (write) data.set(run.subarray(at.mmioData, at.mmioData + len));
      request(d.req.MMIO!);
      if (!write) run.set(data.subarray(0, len), at.mmioData);
    } else if (reason === d.exits.HLT) {
      if (request(d.req.HALTED!) !== d.reply.RUN) return;
    } else if (reason === d.exits.INTR) {
      run[at.immediateExit] = 0;
      if (request(d.req.PARKED!) !== d.reply.RUN) return;
    } else {
      ctl[C.EXIT_REASON!] = reason;
      ctl[C.DETAIL_LO!] = rv.getUint32(at.exitDetail, true) | 0;
      ctl[C.DETAIL_HI!] = rv.getUint32(at.exitDetail + 4, true) | 0;
      request(d.req.STOPPED!);
      return;
    }
  }
}
