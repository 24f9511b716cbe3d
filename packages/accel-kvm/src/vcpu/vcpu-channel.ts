// The shared memory between a vCPU's worker thread and the main thread, which owns the devices.
// Every exit the VMM handles is one synchronous round trip: the worker writes a request and
// blocks in Atomics.wait; the main thread (Atomics.waitAsync) handles it and writes the reply.
// The layout is plain numbers so that the worker's code (a self-contained function) can use it.

/** Int32 slots of the control area. */
export const Ctl = {
  /** Incremented by the worker for each request. */
  REQ_SEQ: 0,
  /** Set by the main thread to the request's sequence number when it replies. */
  RESP_SEQ: 1,
  /** What the request is (`Req`). */
  KIND: 2,
  /** Port (I/O) or low 32 bits of the guest physical address (MMIO). */
  ADDR_LO: 3,
  ADDR_HI: 4,
  /** Access width in bytes. */
  SIZE: 5,
  /** Repetitions (string port I/O). */
  COUNT: 6,
  IS_WRITE: 7,
  /** kvm_run.exit_reason of a STOPPED request. */
  EXIT_REASON: 8,
  /** errno of a RUN_FAILED request. */
  ERRNO: 9,
  /** The worker thread's kernel thread id, for the kick. */
  TID: 10,
  /** Detail of a STOPPED request (FAIL_ENTRY's hardware reason, INTERNAL_ERROR's suberror). */
  DETAIL_LO: 11,
  DETAIL_HI: 12,
  /** The main thread's reply (`Reply`). */
  REPLY: 13,
  /** Exits the worker handled since it started (all kinds), for statistics. */
  EXITS: 14,
} as const;
export const CTL_SLOTS = 16;

/** Request kinds. */
export const Req = {
  /** The worker runs and waits to be told to enter the guest. */
  READY: 1,
  IO: 2,
  MMIO: 3,
  /** KVM_RUN returned EINTR (immediate_exit, or the kick): the vCPU is stopped, its state consistent. */
  PARKED: 4,
  /** KVM_EXIT_HLT (no in-kernel irqchip): the guest waits for an interrupt that nothing sends. */
  HALTED: 5,
  /** An exit the vCPU cannot go on from; the worker ends after the reply. */
  STOPPED: 6,
  /** KVM_RUN failed with an errno other than EINTR; the worker ends after the reply. */
  RUN_FAILED: 7,
} as const;

/** Replies. */
export const Reply = {
  /** Go on (enter the guest again, or the access was handled). */
  RUN: 1,
  /** End the worker (after the current access is done, its state consistent). */
  QUIT: 2,
} as const;

/** Bytes of data one request carries: a whole kvm_run data page for string I/O. */
export const DATA_BYTES = 4096;
const CTL_BYTES = CTL_SLOTS * 4;

/** The channel's memory, shared by both threads. */
export class VcpuChannel {
  readonly ctl: Int32Array;
  readonly data: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(CTL_BYTES + DATA_BYTES)) {
    this.ctl = new Int32Array(buffer, 0, CTL_SLOTS);
    this.data = new Uint8Array(buffer, CTL_BYTES, DATA_BYTES);
  }

  /** Offset of the data area in the buffer (the worker builds its own views). */
  static get dataOffset(): number {
    return CTL_BYTES;
  }
}
