// What the codec tests expect of hostile input: a VfioUserProtocolError whose message says why.

import { expect } from 'vitest';
import { VfioUserProtocolError } from '@vmmkit/core/vfio-user';

/** Run `fn`, expect it to throw a VfioUserProtocolError matching `match`, and return it. */
export function protocolRefusal(fn: () => unknown, match: RegExp): VfioUserProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(VfioUserProtocolError);
  expect((caught as VfioUserProtocolError).message).toMatch(match);
  return caught as VfioUserProtocolError;
}
