// What `vmmkit help` prints.

/** The usage text, as printed by `vmmkit help` (and in part after a usage error). */
export const USAGE = `\
Usage: vmmkit COMMAND [OPTIONS]

Commands:
  caps [--sim] [--json]
      What this host offers VMMs: /dev/iommu and /dev/vfio/vfio, the VFIO backends that can be
      used (legacy type1, iommufd, iommufd's VFIO compat container), KVM, and every VFIO device
      (IOMMU group, IOMMU dirty tracking, VFIO migration flags, device DMA logging). Probing a
      device opens it, as a VMM would.

  run [VM OPTIONS] [--incoming URI|defer] [--duration SECONDS] [--qmp unix:PATH,server=on,wait=off]
      Compose a VM, print its devices and its migration plan (each container's dirty-tracking
      strategy, every blocker), and run it until SIGINT/SIGTERM, QMP quit, or SECONDS have passed.
      With --incoming the VM waits paused for a migration on URI, prints what arrived and the
      SHA-256 of guest RAM, then runs; with --incoming defer it waits for QMP migrate-incoming.
      --qmp serves QEMU's QMP on a Unix socket (several clients): query-status, stop, cont,
      quit, device_add/device_del, object-add/object-del, getfd/closefd/add-fd, query-pci,
      migrate, migrate-incoming, query-migrate, migrate_cancel, migrate-set-parameters, ...

  migrate URI [VM OPTIONS] [--downtime-limit MS] [--max-bandwidth BYTES/S] [--max-iterations N]
          [--channels N] [--integrity]
      Compose the same VM as the destination's, let the guest work a moment, migrate it to the
      destination listening on URI, print the progress and the result, and the SHA-256 of guest
      RAM at switchover.

  serve --device edu|nic --socket PATH
      Serve a simulated PCI device model to a vfio-user client (QEMU's vfio-user-pci, say) on a
      Unix socket at PATH, until SIGINT/SIGTERM; then remove PATH. Guest RAM, interrupts and the
      nic's BAR2 are shared through file descriptors; the nic also migrates (PRE_COPY, STOP_COPY,
      DMA logging). One client at a time; a client that leaves leaves nothing behind.

  help
      Print this text (also -h or --help, anywhere).

VM options (as QEMU's):
  --sim               run on the simulated host (vmmkit's demo machine: an edu device at
                      0000:00:03.0, NICs at 0000:00:05.0 and 0000:00:06.0); the guest keeps busy
  --kvm               run a guest on this machine's KVM: the kvm device (one vCPU) and vmmkit's
                      pages guest, which writes pseudo-random pages of its RAM (-m 2M at least)
  -m SIZE             guest RAM, MiB unless suffixed (K, M, G, T); whole 4 KiB pages, less
                      than 8 PiB; default 128M
  -name NAME          the VM's name (also guest=NAME)
  -object DESC        an object, e.g. iommufd,id=iommufd0 (repeatable)
  -device DESC        a device, e.g. vfio-pci,host=0000:00:05.0[,iommufd=iommufd0] (repeatable)

Migration:
  URI                 tcp:HOST:PORT, PORT 1-65535 (0 with --incoming: any free port, printed),
                      or unix:PATH
  --downtime-limit MS the longest pause at switchover, in ms, up to 2000000 (default 300)
  --max-bandwidth B/S at most this many bytes per second (suffixes K, M, G; default unlimited)
  --max-iterations N  switch over after N precopy passes even if the limit is not met (default 30)
  --channels N        send RAM over N more connections to URI beside the main one, 0 to 16
                      (QEMU's multifd-channels; default 0); the destination learns N itself
  --integrity         checksum every pass of RAM and device data as it is sent; the destination
                      checks it before it starts the guest (off by default: it costs 16-37% of
                      the stream's throughput here, see npm run bench)

Options take one dash or two, and --option=value also works.

Exit status: 0 success; 1 the work failed (a blocker, a device that cannot be realized, a
failed migration); 2 bad usage (unknown command or option, bad value, missing argument).

Examples:
  vmmkit caps
  vmmkit run --sim -m 256M -object iommufd,id=iommufd0 \\
      -device vfio-pci,host=0000:00:05.0 -device vfio-pci,host=0000:00:06.0,iommufd=iommufd0 \\
      --incoming tcp:127.0.0.1:4444
  vmmkit migrate tcp:127.0.0.1:4444 --sim -m 256M -object iommufd,id=iommufd0 \\
      -device vfio-pci,host=0000:00:05.0 -device vfio-pci,host=0000:00:06.0,iommufd=iommufd0
  vmmkit serve --device edu --socket /tmp/edu.sock
      (then: qemu-system-x86_64 ... -device '{"driver":"vfio-user-pci","socket":{"path":"/tmp/edu.sock","type":"unix"}}')
`;
