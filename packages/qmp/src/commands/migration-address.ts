// Where a migration goes or comes from, as `migrate` and `migrate-incoming` take it: a `uri`
// (`tcp:HOST:PORT`, `unix:PATH`) or `channels` (a list with one `main` MigrationChannel whose
// address is a socket, QEMU's MigrationAddress), exactly one of the two.

import { parseSocketAddress, type SocketAddress, type SocketAddressRole } from '@vmmkit/migration';
import { VmmError } from '@vmmkit/core';
import { isObject, type QmpArgs } from '../protocol/qmp-args.js';
import { genericError } from '../protocol/qmp-error.js';

/**
 * The socket address of a migrate or migrate-incoming command.
 * @throws QmpError naming the argument at fault.
 */
export function migrationAddress(command: string, args: QmpArgs, role: SocketAddressRole): SocketAddress {
  const { uri } = args;
  // An empty list is no list, as in QEMU 11.1 (its C list is NULL).
  const channels = Array.isArray(args.channels) && args.channels.length === 0 ? undefined : args.channels;
  if (uri !== undefined && channels !== undefined) {
    throw genericError(`'uri' and 'channels' arguments are mutually exclusive; exactly one of the two should be present in '${command}' qmp command`);
  }
  if (uri === undefined && channels === undefined) throw genericError("need either 'uri' or 'channels' argument");
  if (uri !== undefined) return parsed(uri as string, role);
  const list = channels as unknown[];
  if (list.length !== 1) throw genericError("Parameter 'channels' must hold exactly one channel, of type 'main'");
  return channelAddress(list[0], role);
}

function channelAddress(channel: unknown, role: SocketAddressRole): SocketAddress {
  if (!isObject(channel)) throw genericError("Invalid parameter type for 'channels[0]', expected: object");
  if (channel['channel-type'] !== 'main') throw genericError(`Parameter 'channels[0].channel-type' does not accept value '${String(channel['channel-type'])}'`);
  const addr = channel.addr;
  if (!isObject(addr)) throw genericError("Parameter 'channels[0].addr' is missing");
  if (addr.transport !== 'socket') throw genericError(`Parameter 'channels[0].addr.transport': vmmkit migrates over sockets only, not '${String(addr.transport)}'`);
  if (addr.type === 'unix') {
    if (typeof addr.path !== 'string') throw genericError("Parameter 'channels[0].addr.path' is missing");
    return parsed(`unix:${addr.path}`, role);
  }
  if (addr.type === 'inet') {
    if (typeof addr.host !== 'string') throw genericError("Parameter 'channels[0].addr.host' is missing");
    if (typeof addr.port !== 'string') throw genericError("Parameter 'channels[0].addr.port' is missing");
    return parsed(`tcp:${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`, role);
  }
  throw genericError(`Parameter 'channels[0].addr.type' does not accept value '${String(addr.type)}' (vmmkit: inet or unix)`);
}

function parsed(uri: string, role: SocketAddressRole): SocketAddress {
  try {
    return parseSocketAddress(uri, role);
  } catch (e) {
    throw e instanceof VmmError ? genericError(`Parameter 'uri': ${e.message}`, { cause: e }) : e;
  }
}
