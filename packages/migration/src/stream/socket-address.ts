// Socket addresses of a migration, in QEMU's URI syntax: `tcp:HOST:PORT` (IPv6 as `[::1]`) and
// `unix:PATH`, or the same as objects.

import { ConfigError } from '@vmmkit/core';

/** Where a migration listens or connects. */
export type SocketAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** What an address is for: a listener may ask for port 0 (any free port), a connection may not. */
export type SocketAddressRole = 'listen' | 'connect';

/**
 * Parse `tcp:HOST:PORT` or `unix:PATH` (an object is returned as it is, after the same checks).
 * @param role `connect` refuses port 0, which only means something to a listener.
 * @throws ConfigError naming the address when it is neither, or its port is outside 0..65535
 *   (1..65535 to connect to).
 */
export function parseSocketAddress(address: string | SocketAddress, role: SocketAddressRole = 'listen'): SocketAddress {
  if (typeof address !== 'string') return checked(address, formatSocketAddress(address), role);
  if (address.startsWith('unix:')) return checked({ kind: 'unix', path: address.slice(5) }, address, role);
  const tcp = /^tcp:(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (tcp) return checked({ kind: 'tcp', host: tcp[1] ?? tcp[2]!, port: Number(tcp[3]) }, address, role);
  throw new ConfigError(`migration address ${JSON.stringify(address)} is not tcp:HOST:PORT or unix:PATH`, 'uri', address);
}

/** The address as a URI: `tcp:127.0.0.1:4444`, `tcp:[::1]:4444`, `unix:/run/vm.sock`. */
export function formatSocketAddress(address: SocketAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  return `tcp:${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

function checked(address: SocketAddress, text: string, role: SocketAddressRole): SocketAddress {
  const bad =
    address.kind === 'unix' ? address.path === ''
    : address.host === '' || !Number.isInteger(address.port) || address.port < 0 || address.port > 65535;
  if (bad) throw new ConfigError(`migration address ${JSON.stringify(text)} has an empty path, an empty host or a bad port`, 'uri', text);
  if (role === 'connect' && address.kind === 'tcp' && address.port === 0) {
    throw new ConfigError(`migration address ${JSON.stringify(text)} has port 0, which can be listened on but not connected to`, 'uri', text);
  }
  return address;
}
