// An eventfd the kernel signals an interrupt on, and the callback that hears it: through the
// host's watch (poll on the event loop) where it has one, else by polling every millisecond.

import { HostError, vfioCall, vfioClose, type HostKernel } from '@vmmkit/core';
import { EFD_CLOEXEC, EFD_NONBLOCK } from '@vmmkit/core/uapi';

export class EventfdSink {
  readonly fd: number;
  #stop: () => void;

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
    const drain = (): void => {
      try {
        if (host.read(this.fd, buf) === 8) onSignal(new DataView(buf.buffer).getBigUint64(0, true));
      } catch (e) {
        if (!HostError.is(e, 'EAGAIN')) onError(e);
      }
    };
    try {
      if (host.watch) {
        this.#stop = host.watch(this.fd, drain);
      } else {
        const timer = setInterval(drain, 1);
        this.#stop = () => clearInterval(timer);
      }
    } catch (e) {
      try {
        host.close(this.fd);
      } catch {
        // The fd is released either way; the watch's failure is the one to report.
      }
      throw e;
    }
  }

  /** Stop listening and close the eventfd. */
  close(): void {
    this.#stop();
    vfioClose(this.host, this.fd, 'an interrupt eventfd', this.device);
  }
}
