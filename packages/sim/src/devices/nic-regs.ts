// The register map of the simulated NIC's BAR0 (a made-up device, laid out like a simple
// single-queue receive engine: a descriptor-less ring of fixed-size packet slots in guest memory).

/** Identification: reads NIC_ID_VALUE. */
export const NIC_ID = 0x000;
export const NIC_ID_VALUE = 0x4e49_4331; // "NIC1"
/** Control: NIC_CTRL_RX_EN starts receiving, NIC_CTRL_IRQ_EN enables interrupts, NIC_CTRL_RESET resets. */
export const NIC_CTRL = 0x004;
export const NIC_CTRL_RX_EN = 0x1;
export const NIC_CTRL_IRQ_EN = 0x2;
export const NIC_CTRL_RESET = 0x8000_0000;
/** Status (read-only): link up, and whether the receive engine is moving packets. */
export const NIC_STATUS = 0x008;
export const NIC_STATUS_LINK_UP = 0x1;
export const NIC_STATUS_RX_ACTIVE = 0x2;
/** Interrupt causes, write 1 to clear. */
export const NIC_IRQ_STATUS = 0x00c;
export const NIC_IRQ_RX = 0x1;
export const NIC_IRQ_DMA_ERROR = 0x4;
/** Receive ring base IOVA (64-bit; 32-bit halves at 0x10 and 0x14). */
export const NIC_RX_RING_BASE = 0x010;
/** Number of packet slots in the ring (0 = no ring). */
export const NIC_RX_RING_SIZE = 0x018;
/** Bytes per packet and per slot, 64..4096. */
export const NIC_RX_PKT_SIZE = 0x01c;
/** Producer index (read-only): the next slot the NIC fills. */
export const NIC_RX_HEAD = 0x020;
/** Consumer index: software's next slot to read; the ring is full when head + 1 == tail. */
export const NIC_RX_TAIL = 0x024;
/** Generated traffic in packets per second of virtual time. */
export const NIC_RATE_PPS = 0x028;
/** Packets per receive interrupt. */
export const NIC_IRQ_BATCH = 0x02c;
/** Counters (64-bit, read-only). */
export const NIC_RX_PACKETS = 0x030;
export const NIC_RX_BYTES = 0x038;
export const NIC_RX_DROPS = 0x040;
/** DMA the IOMMU refused (32-bit, read-only). */
export const NIC_DMA_ERRORS = 0x048;
/** Seed of the packet payload pattern. */
export const NIC_SEED = 0x04c;

/** BAR0 layout: registers in the first page, the MSI-X table and PBA in later pages. */
export const NIC_BAR0_SIZE = 0x4000;
export const NIC_MSIX_TABLE = 0x2000;
export const NIC_MSIX_PBA = 0x3000;
export const NIC_MSIX_VECTORS = 4;

/**
 * BAR2: 64 KiB of device memory (64-bit, prefetchable), mappable except for one page of
 * registers in the middle, so user space maps it in two sparse areas.
 */
export const NIC_BAR2_SIZE = 0x10000;
export const NIC_BAR2_REG_PAGE = 0x4000;
/** In BAR2's register page: each write rings the doorbell; reads return how many times it rang. */
export const NIC_DOORBELL = 0x4000;

/** Packet slot header: sequence number (u64), length (u32), flow id (u32); payload follows. */
export const NIC_PKT_HEADER = 16;
export const NIC_PKT_MIN = 64;
export const NIC_PKT_MAX = 4096;
export const NIC_DEFAULT_PKT_SIZE = 2048;
export const NIC_DEFAULT_IRQ_BATCH = 16;
/** Flows tracked in the NIC's internal flow table (its device state beyond the registers). */
export const NIC_FLOWS = 4096;
export const NIC_FLOW_ENTRY = 16;
