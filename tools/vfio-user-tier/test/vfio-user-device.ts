// The -device argument of QEMU's vfio-user client, in the JSON form QEMU 11.1 needs for the
// socket (a SocketAddress; the key=value form cannot express it).

export function vfioUserDevice(socketInRoot: string, id?: string): string {
  return JSON.stringify({ driver: 'vfio-user-pci', ...(id ? { id } : {}), socket: { path: socketInRoot, type: 'unix' } });
}
