// Splits a stream socket's bytes into text lines (QEMU's qtest and QMP both speak line by line).

import type { Socket } from 'node:net';

/** Calls `onLine` for every complete line (without its newline) that arrives on `socket`. */
export function readLines(socket: Socket, onLine: (line: string) => void): void {
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      onLine(line);
    }
  });
}
