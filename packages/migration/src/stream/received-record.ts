// A record as the reader hands it out: its metadata and decoded fields, and its payload as the
// parts it arrived in, joined on first use.

/** The parts joined into one array. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    whole.set(p, at);
    at += p.byteLength;
  }
  return whole;
}

const EMPTY = new Uint8Array(0);

/** A record as the reader builds it: metadata, decoded fields (assigned on), payload parts. */
export class ReceivedRecord {
  #payload: Uint8Array | undefined;

  constructor(
    readonly name: string,
    readonly type: number,
    readonly offset: number,
    readonly size: number,
    readonly parts: readonly Uint8Array[],
  ) {}

  get payload(): Uint8Array {
    if (this.#payload) return this.#payload;
    return (this.#payload = this.parts.length <= 1 ? (this.parts[0] ?? EMPTY) : concat(this.parts));
  }
}
