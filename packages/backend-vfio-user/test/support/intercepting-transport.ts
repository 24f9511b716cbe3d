// A server's end of a transport pair with the test in the way: each message the client sends
// goes to `intercept`, which may answer it itself (through `end`) or pass it on to the server.

import type { VfioUserMessage, VfioUserTransport } from '@vmmkit/core/vfio-user';

/** `end`, whose incoming messages go through `intercept(m, pass)` (`pass()` hands `m` to the server). */
export function intercepting(end: VfioUserTransport, intercept: (m: VfioUserMessage, pass: () => void) => void): VfioUserTransport {
  return {
    endpoint: end.endpoint,
    get open() {
      return end.open;
    },
    start(handlers) {
      end.start({
        message: (m) => intercept(m, () => handlers.message(m)),
        closed: (e) => handlers.closed(e),
      });
    },
    send: (message, fds) => end.send(message, fds),
    close: () => end.close(),
  };
}
