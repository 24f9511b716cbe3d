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
 * A device's handler of the accesses to its range. It may answer later (a device reached over a
 * socket, or whose accessors are asynchronous): the vCPU waits in the exit until the promise
 * settles. Throwing or rejecting stops the vCPU.
 */
export type AccessHandler = (a: GuestAccess) => void | Promise<void>;

/**
 * Handles the accesses of a VM's vCPUs. Resolves false for an access nothing claims: reads of
 * it see all ones and writes are dropped, as on a bus with nothing there. Throwing (or
 * rejecting) stops the vCPU (VcpuStoppedError 'io-failed' with the error as cause).
 */
export interface IoHandler {
  pio(access: GuestAccess): boolean | Promise<boolean>;
  mmio(access: GuestAccess): boolean | Promise<boolean>;
}

interface Claim<A> {
  readonly start: A;
  readonly end: A;
  readonly handle: AccessHandler;
}

/**
 * Claims accesses by what it decodes rather than by a fixed range (the BARs a PCI host bridge
 * maps where the guest programmed them): resolves true when it handled the access.
 */
export type AccessDecoder = (a: GuestAccess) => boolean | Promise<boolean>;

/** Port I/O and MMIO dispatch by address range, first match wins; then the decoders, in order. */
export class IoBus implements IoHandler {
  readonly #ports: Claim<number>[] = [];
  readonly #mmio: Claim<bigint>[] = [];
  readonly #decoders = { pio: [] as AccessDecoder[], mmio: [] as AccessDecoder[] };
  /** Accesses nothing claimed, by kind. */
  readonly unassigned = { pio: 0, mmio: 0 };

  /** Claim ports [start, start + count). Returns what gives them up again. */
  addPorts(start: number, count: number, handle: AccessHandler): () => void {
    return claim(this.#ports, { start, end: start + count, handle });
  }

  /** Claim guest physical [start, start + size). Returns what gives it up again. */
  addMmio(start: bigint, size: bigint, handle: AccessHandler): () => void {
    return claim(this.#mmio, { start, end: start + size, handle });
  }

  /** Ask `decode` about the accesses of `kind` no range claims. Returns what removes it again. */
  addDecoder(kind: 'pio' | 'mmio', decode: AccessDecoder): () => void {
    const list = this.#decoders[kind];
    list.push(decode);
    return () => {
      const at = list.indexOf(decode);
      if (at >= 0) list.splice(at, 1);
    };
  }

  pio(a: GuestAccess): boolean | Promise<boolean> {
    const port = Number(a.addr);
    const r = this.#ports.find((p) => port >= p.start && port < p.end);
    return r ? settled(r.handle(a)) : this.#unclaimed('pio', a);
  }

  mmio(a: GuestAccess): boolean | Promise<boolean> {
    const r = this.#mmio.find((m) => a.addr >= m.start && a.addr < m.end);
    return r ? settled(r.handle(a)) : this.#unclaimed('mmio', a);
  }

  #unclaimed(kind: 'pio' | 'mmio', a: GuestAccess): boolean | Promise<boolean> {
    if (this.#decoders[kind].length > 0) return this.#decode(kind, a);
    this.unassigned[kind]++;
    return false;
  }

  async #decode(kind: 'pio' | 'mmio', a: GuestAccess): Promise<boolean> {
    for (const decode of [...this.#decoders[kind]]) if (await decode(a)) return true;
    this.unassigned[kind]++;
    return false;
  }
}

function claim<A>(list: Claim<A>[], c: Claim<A>): () => void {
  list.push(c);
  return () => {
    const at = list.indexOf(c);
    if (at >= 0) list.splice(at, 1);
  };
}

/** true once the handler is done: at once for a synchronous one. */
function settled(result: void | Promise<void>): boolean | Promise<boolean> {
  return result instanceof Promise ? result.then(() => true) : true;
}
