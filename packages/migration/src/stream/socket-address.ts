// Socket addresses of a migration, in QEMU's URI syntax: `tcp:HOST:PORT` (IPv6 as `[::1]`) and
// `unix:PATH`, or the same as objects.

import { ConfigError } from '@vmmkit/core';

/** Where a migration listens or connects. */
export type SocketAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/**
 * Parse `tcp:HOST:PORT` or `unix:PATH` (an object is returned as it is, after the same checks).
 * @throws ConfigError naming the address when it is neither.
 */
export function parseSocketAddress(address: string | SocketAddress): SocketAddress {
  if (typeof address !== 'string') return checked(address, formatSocketAddress(address));
  if (address.startsWith('unix:')) return checked({ kind: 'unix', path: address.slice(5) }, address);
  const tcp = /^tcp:(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (tcp) return checked({ kind: 'tcp', host: tcp[1] ?? tcp[2]!, port: Number(tcp[3]) }, address);
  throw new ConfigError(`migration address ${JSON.stringify(address)} is not tcp:HOST:PORT or unix:PATH`, 'uri', address);
}

/** The address as a URI: `tcp:127.0.0.1:4444`, `tcp:[::1]:4444`, `unix:/run/vm.sock`. */
export function formatSocketAddress(address: SocketAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  return `tcp:${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

function checked(address: SocketAddress, text: string): SocketAddress {
  const bad =
    address.kind === 'unix' ? address.path === ''
    : address.host === '' || !Number.isInteger(address.port) || address.port < 0 || address.port > 65535;
  if (bad) throw new ConfigError(`migration address ${JSON.stringify(text)} has an empty path, an empty host or a bad port`, 'uri', text);
  return address;
}
