// An eventfd the kernel signals an interrupt on, and the callback that hears it: through the
// host's watch (poll on the event loop) where it has one, else by polling every millisecond.

import { EFD_CLOEXEC, EFD_NONBLOCK, HostError, vfioCall, type HostKernel } from '@vmmkit/core';

export class EventfdSink {
  readonly fd: number;
  #stop: () => void;

  /** Create the eventfd and start listening; `onSignal` gets how many signals were counted. */
  constructor(
    private readonly host: HostKernel,
    device: string,
    onSignal: (count: bigint) => void,
  ) {
    this.fd = vfioCall('create an interrupt eventfd', device, () => host.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    const buf = new Uint8Array(8);
    const drain = (): void => {
      try {
        if (host.read(this.fd, buf) === 8) onSignal(new DataView(buf.buffer).getBigUint64(0, true));
      } catch (e) {
        if (!HostError.is(e, 'EAGAIN')) throw e;
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
      host.close(this.fd);
      throw e;
    }
  }

  /** Stop listening and close the eventfd. */
  close(): void {
    this.#stop();
    this.host.close(this.fd);
  }
}
