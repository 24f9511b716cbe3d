// The errors a QMP command answers with: QEMU's ErrorClass (qapi/control.json's QapiErrorClass)
// and a human-readable description, which names the argument at fault.

import { VmmError } from '@vmmkit/core';

/** QEMU's error classes; GenericError is almost every error, the others mark what clients test for. */
export type QmpErrorClass = 'GenericError' | 'CommandNotFound' | 'DeviceNotActive' | 'DeviceNotFound' | 'KVMMissingCap';

/** A command failed, as the client is told: `{"error": {"class": ..., "desc": ...}}`. */
export class QmpError extends VmmError {
  override readonly name = 'QmpError';
  readonly code = 'QMP';

  constructor(readonly errorClass: QmpErrorClass, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A GenericError. */
export const genericError = (message: string, options?: ErrorOptions): QmpError => new QmpError('GenericError', message, options);
