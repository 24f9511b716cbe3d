// Small bare-metal x86 guests (32-bit protected mode, flat segments, paging off; see each .S
// beside its listing), for tests, benchmarks and demos of KVM.

export { PAGES_GUEST } from './pages-guest.js';
export { MMIO_GUEST } from './mmio-guest.js';
export { EXITS_GUEST } from './exits-guest.js';
export { DIRTY_GUEST } from './dirty-guest.js';
export { NIC_RING_GUEST } from './nic-ring-guest.js';
export * from './nic-ring-params.js';
export { MMIO_EXITS_GUEST } from './mmio-exits-guest.js';
export { DEVICES_GUEST } from './devices-guest.js';
export { TICKS_GUEST } from './ticks-guest.js';
