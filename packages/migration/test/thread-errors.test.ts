// Errors across a worker's message port: a typed error comes back as the same class with its
// fields and cause (structured cloning alone would leave a plain Error); anything else is an
// InvariantError that names it.

import { describe, expect, it } from 'vitest';
import { HostError, InvariantError } from '@vmmkit/core';
import { MigrationStreamError, MigrationTimeoutError, MigrationTransportError } from '../src/index.js';
import { reviveError, sendError } from '../src/stream/thread-errors.js';

/** What the other thread gets: the error as data, cloned as postMessage clones it. */
const across = (e: unknown): Error => reviveError(structuredClone(sendError(e)));

describe('errors across threads', () => {
  it('come back as their class, with their fields and message', () => {
    const stream = across(new MigrationStreamError('bad-checksum', 'RAM_PAGES', 4120, 'the stream was corrupted'));
    expect(stream).toBeInstanceOf(MigrationStreamError);
    expect(stream).toMatchObject({ fault: 'bad-checksum', record: 'RAM_PAGES', offset: 4120, code: 'MIGRATION_STREAM' });
    expect(stream.message).toBe('migration stream: RAM_PAGES record at offset 4120: the stream was corrupted');
    const timeout = across(new MigrationTimeoutError('tcp:10.0.0.2:4444', 300, 301, 16, { name: 'RAM_PAGES', offset: 8 }));
    expect(timeout).toBeInstanceOf(MigrationTimeoutError);
    expect(timeout).toMatchObject({ timeoutMs: 300, record: { name: 'RAM_PAGES', offset: 8 } });
  });

  it('keep their cause chain', () => {
    const host = new HostError({ errno: 104, syscall: 'read', fd: 7 });
    const lost = across(new MigrationTransportError('unix:/tmp/m.sock', 'connection lost', { cause: host }));
    expect(lost).toBeInstanceOf(MigrationTransportError);
    expect(lost.cause).toBeInstanceOf(HostError);
    expect(lost.cause).toMatchObject({ errno: 'ECONNRESET', syscall: 'read', fd: 7 });
  });

  it('turn an error of no known class into an InvariantError naming it', () => {
    const bug = across(new TypeError('x is not a function'));
    expect(bug).toBeInstanceOf(InvariantError);
    expect(bug.message).toBe("TypeError in a RAM channel's worker thread: x is not a function");
  });
});
