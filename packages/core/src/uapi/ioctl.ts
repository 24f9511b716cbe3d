// The ioctl request encoding of <asm-generic/ioctl.h>: direction, size, type and number.

export const _IOC_NONE = 0;
export const _IOC_WRITE = 1;
export const _IOC_READ = 2;

/** Encode an ioctl request number as the kernel's `_IOC` macro does. */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
export const _IO = (type: number, nr: number): number => _IOC(_IOC_NONE, type, nr, 0);
export const _IOR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ, type, nr, size);
export const _IOW = (type: number, nr: number, size: number): number => _IOC(_IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number =>
  _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);

/**
 * What kind of file an fd is, which decides how the kernel reads an ioctl number: VFIO reuses
 * numbers between container and device fds (0x3b70 is both VFIO_IOMMU_GET_INFO and
 * VFIO_DEVICE_GET_PCI_HOT_RESET_INFO).
 */
export type FdKind = 'vfio-container' | 'vfio-group' | 'vfio-device' | 'vfio-mig-data' | 'iommufd' | 'kvm';
