// Errors of a device or object that was given a descriptor the client passed, told in the
// client's terms: the client named the descriptor (getfd's fdname) and the device (its id), while
// vmmkit, like QEMU, knows the descriptor by its number in the VMM and a VFIO device opened from
// one by `VFIO_FD<n>`.

import { genericError, QmpError } from '../protocol/qmp-error.js';

/** What the client called things. */
export interface ClientNames {
  /** The device or object as the client knows it (`vfio-pci 'nic0'`, `iommufd object 'io1'`). */
  readonly subject: string;
  /** The descriptor's number in the VMM. */
  readonly fd: number;
  /** The name the client gave it with getfd, if it gave one. */
  readonly fdName: string | undefined;
}

/** `e` as a QmpError whose message names the subject and the client's `fd=` value. */
export function inClientTerms(e: unknown, names: ClientNames): unknown {
  if (!(e instanceof Error)) return e;
  const { subject, fd, fdName } = names;
  const option = fdName === undefined ? `fd=${fd}` : `fd=${fdName} (the VMM's fd ${fd})`;
  const renamed = e.message.replace(new RegExp(`\\bVFIO_FD${fd}\\b`, 'g'), subject).replace(new RegExp(`\\bfd=${fd}\\b`, 'g'), option);
  const message = renamed.includes(subject) ? renamed : `${subject}: ${renamed}`;
  return e instanceof QmpError ? new QmpError(e.errorClass, message, { cause: e }) : genericError(message, { cause: e });
}
