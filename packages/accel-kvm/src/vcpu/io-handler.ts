// Where a vCPU's port I/O and MMIO exits go: the VM's devices, on the main thread.

/** One guest access that exited to the VMM. */
export interface GuestAccess {
  readonly vcpu: number;
  /** The port (I/O) or guest physical address (MMIO). */
  readonly addr: bigint;
  /** Width of each access in bytes (1, 2, 4, 8). */
  readonly size: number;
  /** Repetitions (string port I/O: `rep outsb`); 1 for MMIO. */
  readonly count: number;
  readonly write: boolean;
  /** `size × count` bytes: what the guest wrote, or where a read's result goes. */
  readonly data: Uint8Array;
}

/**
 * Handles the accesses of a VM's vCPUs. Returns false for an access nothing claims: reads of
 * it see all ones and writes are dropped, as on a bus with nothing there. Throwing stops the
 * vCPU (VcpuStoppedError 'io-failed' with the error as cause).
 */
export interface IoHandler {
  pio(access: GuestAccess): boolean;
  mmio(access: GuestAccess): boolean;
}

/** Port I/O and MMIO dispatch by address range, first match wins. */
export class IoBus implements IoHandler {
  readonly #ports: { start: number; end: number; handle: (a: GuestAccess) => void }[] = [];
  readonly #mmio: { start: bigint; end: bigint; handle: (a: GuestAccess) => void }[] = [];
  /** Accesses nothing claimed, by kind. */
  readonly unassigned = { pio: 0, mmio: 0 };

  /** Claim ports [start, start + count). */
  addPorts(start: number, count: number, handle: (a: GuestAccess) => void): void {
    this.#ports.push({ start, end: start + count, handle });
  }

  /** Claim guest physical [start, start + size). */
  addMmio(start: bigint, size: bigint, handle: (a: GuestAccess) => void): void {
    this.#mmio.push({ start, end: start + size, handle });
  }

  pio(a: GuestAccess): boolean {
    const port = Number(a.addr);
    const r = this.#ports.find((p) => port >= p.start && port < p.end);
    if (!r) return (this.unassigned.pio++, false);
    r.handle(a);
    return true;
  }

  mmio(a: GuestAccess): boolean {
    const r = this.#mmio.find((m) => a.addr >= m.start && a.addr < m.end);
    if (!r) return (this.unassigned.mmio++, false);
    r.handle(a);
    return true;
  }
}
