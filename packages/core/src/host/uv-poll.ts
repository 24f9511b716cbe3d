// Fd readiness from libuv's event loop through libuv's own poll handles, called back straight
// through a koffi callback. koffi.node.poll does the same but builds a new event object with
// three named properties for every wakeup, which costs about as much as the recvmsg the wakeup
// announces; a request/reply round trip has two. Main thread only: uv_default_loop() is the
// main thread's loop, a worker has its own (where koffi.node.poll is used instead). koffi comes
// from linux-libc.ts, the one module that loads it.

import type Koffi from 'koffi';
import { isMainThread } from 'node:worker_threads';
import { HostError } from './host-error.js';
import type { FdPoll, PollEvents } from './linux-libc.js';

/** uv.h: UV_POLL in uv_handle_type, and the uv_poll_event bits. */
const UV_POLL = 8;
const UV_READABLE = 1;
const UV_WRITABLE = 2;

/** The readiness reported for each combination of the two event bits (shared, so frozen). */
const READY: readonly PollEvents[] = [
  Object.freeze({ readable: false, writable: false }),
  Object.freeze({ readable: true, writable: false }),
  Object.freeze({ readable: false, writable: true }),
  Object.freeze({ readable: true, writable: true }),
];

/** Start watching `fd` for `events`, calling `onEvent` from the poll phase. */
export type StartPoll = (fd: number, events: PollEvents, onEvent: (ready: PollEvents) => void) => FdPoll;

let made: { start: StartPoll | undefined } | undefined;

/**
 * The libuv poll of this thread, or undefined where it cannot be used (a worker thread, or a
 * Node whose libuv symbols are not visible to dlsym); the caller then uses koffi.node.poll.
 * Made once per thread (koffi keeps the callback types and callbacks it registers).
 */
export function libuvPoll(koffi: typeof Koffi, address: (bytes: Uint8Array) => bigint): StartPoll | undefined {
  made ??= { start: isMainThread ? makeLibuvPoll(koffi, address) : undefined };
  return made.start;
}

function makeLibuvPoll(koffi: typeof Koffi, address: (bytes: Uint8Array) => bigint): StartPoll | undefined {
  let uv;
  try {
    // The node executable itself exports libuv for addons.
    const self = koffi.load(null as unknown as string);
    const onPoll = koffi.proto('void vmmkit_uv_poll_cb(uint64_t handle, int status, int events)');
    const onClose = koffi.proto('void vmmkit_uv_close_cb(uint64_t handle)');
    uv = {
      loop: self.func('void *uv_default_loop()')() as unknown,
      handleSize: Number(self.func('size_t uv_handle_size(int type)')(UV_POLL)),
      init: self.func('int uv_poll_init(void *loop, void *handle, int fd)'),
      start: self.func('int uv_poll_start(void *handle, int events, vmmkit_uv_poll_cb *cb)'),
      stop: self.func('int uv_poll_stop(void *handle)'),
      close: self.func('void uv_close(void *handle, vmmkit_uv_close_cb *cb)'),
      onPoll, onClose,
    };
  } catch {
    return undefined;
  }
  // Every live handle by its address with its memory, and the memory of those closing: libuv uses
  // it until the close callback runs, so it must not be collected even if an owner dropped it.
  const live = new Map<number, { readonly onEvent: (ready: PollEvents) => void; readonly handle: Uint8Array }>();
  const closing = new Map<number, Uint8Array>();
  // One callback each for all handles: koffi has a limited number of callback slots.
  const pollCallback = koffi.register((handle: number, status: number, events: number) => {
    // A failed poll is reported as readable, so that the next read reports the fd's error.
    live.get(handle)?.onEvent(status < 0 ? READY[UV_READABLE]! : READY[events & (UV_READABLE | UV_WRITABLE)]!);
  }, koffi.pointer(uv.onPoll));
  const closeCallback = koffi.register((handle: number) => {
    closing.delete(handle);
  }, koffi.pointer(uv.onClose));
  const mask = (e: PollEvents): number => (e.readable ? UV_READABLE : 0) | (e.writable ? UV_WRITABLE : 0);

  return (fd, events, onEvent) => {
    const handle = new Uint8Array(new ArrayBuffer(uv.handleSize));
    const key = Number(address(handle));
    const initialized = uv.init(uv.loop, handle, fd) as number;
    if (initialized < 0) throw new HostError({ errno: -initialized, syscall: 'uv_poll_init', fd });
    let open = true;
    const close = (): void => {
      if (!open) return;
      open = false;
      live.delete(key);
      closing.set(key, handle);
      uv.close(handle, closeCallback);
    };
    const start = (next: PollEvents): void => {
      const rc = (mask(next) ? uv.start(handle, mask(next), pollCallback) : uv.stop(handle)) as number;
      if (rc < 0) throw new HostError({ errno: -rc, syscall: 'uv_poll_start', fd });
    };
    live.set(key, { onEvent, handle });
    try {
      start(events);
    } catch (e) {
      close();
      throw e;
    }
    return {
      update: (next) => {
        if (open) start(next);
      },
      close,
    };
  };
}
