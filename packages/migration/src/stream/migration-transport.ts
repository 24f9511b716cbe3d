// The byte channel a migration runs over (QEMU's QIOChannel): one duplex connection carrying the
// forward stream one way and the return path the other. Sockets and an in-process pair implement it.

/**
 * A duplex byte stream between a migration source and destination.
 *
 * Connection loss (the peer destroyed its end, the process died, the network broke) rejects the
 * pending and later `read`/`write` calls with a `MigrationTransportError`, or, when the peer's
 * side only closed, reads as the end of the stream; it never leaves a call pending forever.
 */
export interface MigrationTransport {
  /** What to call the transport in messages: its address, e.g. `tcp:127.0.0.1:4444`. */
  readonly name: string;
  /**
   * Optional: bytes received from the peer so far, read or not. An idle timeout uses it to tell
   * a slow peer from a silent one inside one long `readInto`.
   */
  readonly bytesReceived?: number;
  /**
   * Send `chunks` in order. The bytes now belong to the transport: the caller must not change
   * them afterwards (they may be sent later, without a copy). Resolves when the transport can
   * take more (backpressure); rejects when the connection is lost or the transport destroyed.
   */
  write(chunks: readonly Uint8Array[]): Promise<void>;
  /**
   * The next chunk received, in order, or `undefined` once the peer has ended its side and
   * everything was read. The chunk is the caller's to keep.
   */
  read(): Promise<Uint8Array | undefined>;
  /**
   * Optional: fill `target` with the next bytes received (those not yet read come first), letting
   * the system receive the rest straight into it (page data into guest memory, with no copy).
   * Resolves with the bytes placed: fewer than `target.byteLength` only where the stream ended.
   * Readers fall back to `read` and a copy where a transport lacks it.
   */
  readInto?(target: Uint8Array): Promise<number>;
  /** End this side (the peer reads the end of the stream) once every written byte has gone out. */
  end(): Promise<void>;
  /**
   * Tear the connection down at once. Pending and later calls here reject with `error` (or a
   * "destroyed" error); the peer's reject as a lost connection. Idempotent.
   */
  destroy(error?: Error): void;
}
