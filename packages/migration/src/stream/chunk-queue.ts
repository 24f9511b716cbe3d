// A FIFO of received byte chunks with a running byte count: what a transport has received and
// its reader has not taken yet.

/** Chunks in arrival order, and how many bytes they hold. */
export class ChunkQueue<T extends Uint8Array = Uint8Array> {
  #items: T[] = [];
  #head = 0;
  #bytes = 0;

  /** Bytes queued. */
  get bytes(): number {
    return this.#bytes;
  }

  get empty(): boolean {
    return this.#head === this.#items.length;
  }

  push(chunk: T): void {
    if (chunk.byteLength === 0) return;
    this.#items.push(chunk);
    this.#bytes += chunk.byteLength;
  }

  /** Put a chunk (the rest of one just shifted) back at the front. */
  unshift(chunk: T): void {
    if (chunk.byteLength === 0) return;
    if (this.#head > 0) this.#items[--this.#head] = chunk;
    else this.#items.unshift(chunk);
    this.#bytes += chunk.byteLength;
  }

  /** The oldest chunk, removed; undefined when empty. */
  shift(): T | undefined {
    if (this.empty) return undefined;
    const chunk = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as unknown as T;
    // Drop the taken slots now and then rather than shifting the array on every take.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#bytes -= chunk.byteLength;
    return chunk;
  }

  clear(): void {
    this.#items = [];
    this.#head = this.#bytes = 0;
  }
}
