// @vmmkit/sim: SimHost, an in-process model of the Linux VFIO + IOMMUFD uAPI.

export * from './sim-host.js';
export * from './hybrid-host.js';
export * from './config.js';
export { SimDmaFault } from './iommu/dma-target.js';
export type { SimCall, SimFault, SimSyscall } from './kernel/fault-injector.js';
export { DEFAULT_KERNEL, type SimKernelVersion } from './kernel/linux-series.js';
export type { SimPciModel, SimBar, SimDeviceBus, SimIrq, SimIoeventfdRegister, SimMigratableState } from './devices/pci-model.js';
export type { MemoryBacking } from './memory/backing.js';
export { DenseBacking } from './memory/backing.js';
// The built-in device models' register maps, for programs and tests that drive them.
export * from './devices/edu.js';
export * from './devices/nic-regs.js';
export { NicModel } from './devices/nic.js';
export { MttyModel } from './devices/mtty.js';
export { UART_IER, UART_IIR, UART_LCR, UART_LSR, UART_MCR, UART_MSR, UART_RX, UART_SCR } from './devices/mtty-serial.js';
export { makePacket } from './devices/nic-traffic.js';
// A simulated guest at work, and the machines it runs on.
export * from './guest/index.js';
// What a device server outside the simulated kernel (vmmkit's vfio-user server) shares with it:
// the built-in models by name, the generic VFIO migration driver and the device DMA log.
export { createModel } from './devices/models.js';
export type { SimMigrationDriver } from './devices/pci-model.js';
export { VfioMigration, type VfioMigrationContext } from './vfio/migration-driver.js';
export type { VfioMigDataFile } from './vfio/mig-data-file.js';
export { MIG_STATE_NAMES, migNextState, migStateSupported } from './vfio/mig-fsm.js';
export { DmaLogging, type DmaLoggingContext, type LogRange } from './vfio/dma-logging.js';
export { Census, type ObjectKind } from './kernel/census.js';
export { SimErrno } from './kernel/sim-errno.js';
export { buildConfigSpace, msiEnabled, msixEnabled, type ConfigSpaceSpec } from './devices/config-space.js';
