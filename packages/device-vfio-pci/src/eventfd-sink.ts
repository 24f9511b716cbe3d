// An eventfd the kernel signals an interrupt on, and the callback that hears it: through the
// host's watch (poll on the event loop) where it has one, else by polling every millisecond.
// Listening can stop while someone else consumes the eventfd (a KVM irqfd) and start again.

import { HostError, vfioCall, vfioClose, type HostKernel } from '@vmmkit/core';
import { EFD_CLOEXEC, EFD_NONBLOCK } from '@vmmkit/core/uapi';

export class EventfdSink {
  readonly fd: number;
  readonly #drain: () => void;
  /** Stops listening; undefined while not listening. */
  #stop: (() => void) | undefined;

  /**
   * Create the eventfd and start listening; `onSignal` gets how many signals were counted, and
   * `onError` a read that failed (the event loop must not throw).
   */
  constructor(
    private readonly host: HostKernel,
    private readonly device: string,
    onSignal: (count: bigint) => void,
    onError: (e: unknown) => void,
  ) {
    this.fd = vfioCall('create an interrupt eventfd', device, () => host.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    const buf = new Uint8Array(8);
    this.#drain = (): void => {
      try {
        if (host.read(this.fd, buf) === 8) onSignal(new DataView(buf.buffer).getBigUint64(0, true));
      } catch (e) {
        if (!HostError.is(e, 'EAGAIN')) onError(e);
      }
    };
    try {
      this.listen();
    } catch (e) {
      try {
        host.close(this.fd);
      } catch {
        // The fd is released either way; the watch's failure is the one to report.
      }
      throw e;
    }
  }

  /** Whether the VMM reads the eventfd now. */
  get listening(): boolean {
    return this.#stop !== undefined;
  }

  /**
   * Read the eventfd again (after `pause`). Signals counted meanwhile are heard at once: the
   * host's watch reports a readable eventfd as soon as it starts.
   */
  listen(): void {
    if (this.#stop) return;
    if (this.host.watch) {
      this.#stop = this.host.watch(this.fd, this.#drain);
    } else {
      const timer = setInterval(this.#drain, 1);
      this.#stop = () => clearInterval(timer);
    }
  }

  /** Stop reading the eventfd (another consumer takes its signals); the fd stays open. */
  pause(): void {
    const stop = this.#stop;
    this.#stop = undefined;
    stop?.();
  }

  /** Stop listening and close the eventfd. */
  close(): void {
    this.pause();
    vfioClose(this.host, this.fd, 'an interrupt eventfd', this.device);
  }
}
