// Passing file descriptors (qapi/misc.json): getfd / closefd name a descriptor that came with the
// command (SCM_RIGHTS) for later device_add fd=NAME or object-add fd=NAME; add-fd, remove-fd and
// query-fdsets keep them in fd sets.

import type { QmpCommand, QmpClientFds } from '../protocol/qmp-command.js';
import { genericError, QmpError } from '../protocol/qmp-error.js';

/** The descriptor that came with the command; `what` names what it was for, when it was refused. */
function received(fds: QmpClientFds, what: string): number {
  let fd: number | undefined;
  try {
    fd = fds.takeReceived();
  } catch (e) {
    throw e instanceof QmpError ? genericError(`${what}: ${e.message}`, { cause: e }) : e;
  }
  if (fd === undefined) throw genericError('No file descriptor supplied via SCM_RIGHTS');
  return fd;
}

export const getfd: QmpCommand = {
  name: 'getfd',
  args: { fdname: 'str' },
  run: ({ fdname }, { server, fds }) => {
    const name = fdname as string;
    if (/^\d/.test(name)) throw genericError("Parameter 'fdname' expects a name not starting with a digit");
    const fd = received(fds, `getfd '${name}'`);
    // A name given again replaces the descriptor it had (QEMU closes the old one).
    const old = fds.named.get(name);
    fds.named.set(name, fd);
    if (old !== undefined) server.closeFd(old);
    return {};
  },
};

export const closefd: QmpCommand = {
  name: 'closefd',
  args: { fdname: 'str' },
  run: ({ fdname }, { server, fds }) => {
    const fd = fds.named.get(fdname as string);
    if (fd === undefined) throw genericError(`File descriptor named '${String(fdname)}' not found`);
    fds.named.delete(fdname as string);
    server.closeFd(fd);
    return {};
  },
};

export const addFd: QmpCommand = {
  name: 'add-fd',
  args: { '*fdset-id': 'int', '*opaque': 'str' },
  run: (args, { server, fds }) => {
    const setId = args['fdset-id'] as number | undefined;
    // Checked before the descriptor is taken, which the session then closes.
    if (setId !== undefined && setId < 0) throw genericError("Parameter 'fdset-id' expects a non-negative value");
    return server.fdSets.add(received(fds, 'add-fd'), setId, args.opaque as string | undefined);
  },
};

export const removeFd: QmpCommand = {
  name: 'remove-fd',
  args: { 'fdset-id': 'int', '*fd': 'int' },
  run: (args, { server }) => {
    server.fdSets.remove(args['fdset-id'] as number, args.fd as number | undefined);
    return {};
  },
};

export const queryFdsets: QmpCommand = { name: 'query-fdsets', args: {}, run: (_args, { server }) => server.fdSets.list() };

export const FD_COMMANDS: readonly QmpCommand[] = [getfd, closefd, addFd, removeFd, queryFdsets];
