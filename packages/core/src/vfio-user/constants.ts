// vfio-user's wire constants (QEMU docs/interop/vfio-user.rst, "Commands" and "Header"): command
// numbers, header flags and the defaults of the version capabilities.

/** Bytes of the header every message starts with. */
export const VFIO_USER_HEADER_SIZE = 16;

export const VFIO_USER_VERSION = 1;
export const VFIO_USER_DMA_MAP = 2;
export const VFIO_USER_DMA_UNMAP = 3;
export const VFIO_USER_DEVICE_GET_INFO = 4;
export const VFIO_USER_DEVICE_GET_REGION_INFO = 5;
export const VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6;
export const VFIO_USER_DEVICE_GET_IRQ_INFO = 7;
export const VFIO_USER_DEVICE_SET_IRQS = 8;
export const VFIO_USER_REGION_READ = 9;
export const VFIO_USER_REGION_WRITE = 10;
export const VFIO_USER_DMA_READ = 11;
export const VFIO_USER_DMA_WRITE = 12;
export const VFIO_USER_DEVICE_RESET = 13;
export const VFIO_USER_REGION_WRITE_MULTI = 15;
export const VFIO_USER_DEVICE_FEATURE = 16;
export const VFIO_USER_MIG_DATA_READ = 17;
export const VFIO_USER_MIG_DATA_WRITE = 18;

/** Command names by number, for messages and errors. */
export const VFIO_USER_COMMAND_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [VFIO_USER_VERSION]: 'VFIO_USER_VERSION',
  [VFIO_USER_DMA_MAP]: 'VFIO_USER_DMA_MAP',
  [VFIO_USER_DMA_UNMAP]: 'VFIO_USER_DMA_UNMAP',
  [VFIO_USER_DEVICE_GET_INFO]: 'VFIO_USER_DEVICE_GET_INFO',
  [VFIO_USER_DEVICE_GET_REGION_INFO]: 'VFIO_USER_DEVICE_GET_REGION_INFO',
  [VFIO_USER_DEVICE_GET_REGION_IO_FDS]: 'VFIO_USER_DEVICE_GET_REGION_IO_FDS',
  [VFIO_USER_DEVICE_GET_IRQ_INFO]: 'VFIO_USER_DEVICE_GET_IRQ_INFO',
  [VFIO_USER_DEVICE_SET_IRQS]: 'VFIO_USER_DEVICE_SET_IRQS',
  [VFIO_USER_REGION_READ]: 'VFIO_USER_REGION_READ',
  [VFIO_USER_REGION_WRITE]: 'VFIO_USER_REGION_WRITE',
  [VFIO_USER_DMA_READ]: 'VFIO_USER_DMA_READ',
  [VFIO_USER_DMA_WRITE]: 'VFIO_USER_DMA_WRITE',
  [VFIO_USER_DEVICE_RESET]: 'VFIO_USER_DEVICE_RESET',
  [VFIO_USER_REGION_WRITE_MULTI]: 'VFIO_USER_REGION_WRITE_MULTI',
  [VFIO_USER_DEVICE_FEATURE]: 'VFIO_USER_DEVICE_FEATURE',
  [VFIO_USER_MIG_DATA_READ]: 'VFIO_USER_MIG_DATA_READ',
  [VFIO_USER_MIG_DATA_WRITE]: 'VFIO_USER_MIG_DATA_WRITE',
});

/** The name of command `command`, or `command <n>` for one the protocol does not define. */
export function vfioUserCommandName(command: number): string {
  return VFIO_USER_COMMAND_NAMES[command] ?? `command ${command}`;
}

/** Flags bits 0-3: the message type. */
export const VFIO_USER_F_TYPE_MASK = 0xf;
export const VFIO_USER_F_TYPE_COMMAND = 0x0;
export const VFIO_USER_F_TYPE_REPLY = 0x1;
/** A command that wants no reply. */
export const VFIO_USER_F_NO_REPLY = 0x10;
/** A reply that reports an error (the header's error field holds the errno, possibly 0). */
export const VFIO_USER_F_ERROR = 0x20;
/** Every flag bit the protocol defines. */
export const VFIO_USER_F_KNOWN = VFIO_USER_F_TYPE_MASK | VFIO_USER_F_NO_REPLY | VFIO_USER_F_ERROR;

/** VFIO_USER_DMA_MAP flags. */
export const VFIO_USER_F_DMA_REGION_READ = 1 << 0;
export const VFIO_USER_F_DMA_REGION_WRITE = 1 << 1;

/** Sub-region types of VFIO_USER_DEVICE_GET_REGION_IO_FDS. */
export const VFIO_USER_IO_FD_TYPE_IOEVENTFD = 0;
export const VFIO_USER_IO_FD_TYPE_IOREGIONFD = 1;
/** ioeventfd sub-region flags: KVM's KVM_IOEVENTFD_FLAG_* bits the specification lists. */
export const VFIO_USER_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
export const VFIO_USER_IOEVENTFD_FLAG_PIO = 1 << 1;
export const VFIO_USER_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY = 1 << 3;
/** ioregionfd sub-region flags (the proposed KVM_IOREGION_* bits). */
export const VFIO_USER_IOREGIONFD_FLAG_PIO = 1 << 0;
export const VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES = 1 << 1;

/** The protocol version this implementation speaks: 0.0 (QEMU 11.1 refuses a reply with minor > 0). */
export const VFIO_USER_MAJOR = 0;
export const VFIO_USER_MINOR = 0;

/** Capability defaults the specification gives for an absent field. */
export const VFIO_USER_DEFAULT_MAX_MSG_FDS = 1;
export const VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE = 1 << 20;
export const VFIO_USER_DEFAULT_MAX_DMA_MAPS = 65535;
export const VFIO_USER_DEFAULT_PGSIZES = 4096;

/** Largest number of fds one message may carry whatever is negotiated (Linux's SCM_MAX_FD). */
export const VFIO_USER_FD_LIMIT = 253;
/** Bytes of a REGION_WRITE_MULTI entry; each carries at most 8 data bytes. */
export const VFIO_USER_WRITE_MULTI_ENTRY = 24;
/** Most entries one REGION_WRITE_MULTI may carry (QEMU's VFIO_USER_MULTI_MAX). */
export const VFIO_USER_WRITE_MULTI_MAX = 200;
