// Typed errors across a worker thread's message port. Structured cloning keeps an Error's message
// but not its class or fields, so an error crosses as data (class name, message, own fields,
// cause) and is revived on the other side as an instance of the same class, fields and all:
// a channel's MigrationStreamError read in a worker is a MigrationStreamError where it is caught.

import { ArgumentError, HostError, InvariantError } from '@vmmkit/core';
import {
  MigrationCancelledError, MigrationChannelThreadError, MigrationRefusedError, MigrationStreamError, MigrationTimeoutError, MigrationTransportError,
} from '../migration-errors.js';

/** An error as data. */
export interface SentError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly fields: Record<string, unknown>;
  readonly cause?: SentError;
}

const CLASSES: Record<string, { prototype: object }> = {
  MigrationStreamError, MigrationTransportError, MigrationTimeoutError, MigrationRefusedError, MigrationCancelledError, MigrationChannelThreadError,
  HostError, ArgumentError, InvariantError,
};

/** `error` as data for postMessage (fields that cannot be cloned are dropped). */
export function sendError(error: unknown, depth = 0): SentError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key === 'cause' || typeof value === 'function') continue;
    try {
      structuredClone(value);
      fields[key] = value;
    } catch {
      // Not cloneable: left out.
    }
  }
  const cause = error.cause !== undefined && depth < 8 ? sendError(error.cause, depth + 1) : undefined;
  return { name: error.name, message: error.message, stack: error.stack, fields, ...(cause && { cause }) };
}

/**
 * The error `sendError` described: an instance of its class, fields and all, where the class is
 * known; any other (a bug in the worker: a TypeError, say) is an InvariantError that names it.
 */
export function reviveError(sent: SentError): Error {
  const type = CLASSES[sent.name];
  if (!type) {
    const cause = sent.cause ? { cause: reviveError(sent.cause) } : undefined;
    return new InvariantError(`${sent.name} in a RAM channel's worker thread: ${sent.message}`, cause);
  }
  const error = Object.create(type.prototype) as Error;
  Object.defineProperty(error, 'message', { value: sent.message, writable: true, configurable: true });
  if (sent.stack !== undefined) Object.defineProperty(error, 'stack', { value: sent.stack, writable: true, configurable: true });
  Object.assign(error, sent.fields);
  if (sent.cause) Object.defineProperty(error, 'cause', { value: reviveError(sent.cause), writable: true, configurable: true });
  return error;
}
