// <linux/kvm.h> and x86's <asm/kvm.h>: the system, VM and vCPU ioctls vmmkit's KVM accelerator
// makes, with their structs. Checked against the host's headers by test/uapi-kvm-abi.test.ts.
// Everything here is x86-64 (the only architecture the accelerator supports).

import { _IO, _IOR, _IOW, _IOWR } from './ioctl.js';
import { array, defineStruct, flex, s32, s64, u8, u16, u32, u64, union } from './struct.js';

export const KVMIO = 0xae;
export const KVM_API_VERSION = 12;

// -------- system ioctls (/dev/kvm) --------
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04);

/** Extensions for KVM_CHECK_EXTENSION (and KVM_ENABLE_CAP). */
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_SET_TSS_ADDR = 4;
export const KVM_CAP_EXT_CPUID = 7;
export const KVM_CAP_NR_VCPUS = 9;
/** KVM_CHECK_EXTENSION answers how many GSI routes the VM's table may hold (KVM_MAX_IRQ_ROUTES). */
export const KVM_CAP_IRQ_ROUTING = 25;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_MP_STATE = 14;
export const KVM_CAP_SYNC_MMU = 16;
export const KVM_CAP_IRQFD = 32;
export const KVM_CAP_SIGNAL_MSI = 77;
export const KVM_CAP_PIT2 = 33;
export const KVM_CAP_PIT_STATE2 = 35;
export const KVM_CAP_IOEVENTFD = 36;
export const KVM_CAP_ADJUST_CLOCK = 39;
export const KVM_CAP_VCPU_EVENTS = 41;
export const KVM_CAP_DEBUGREGS = 50;
/** KVM_SET_TSC_KHZ can scale a vCPU's TSC to another frequency (TSC scaling in hardware). */
export const KVM_CAP_TSC_CONTROL = 60;
/** KVM_GET_TSC_KHZ reads a vCPU's TSC frequency. */
export const KVM_CAP_GET_TSC_KHZ = 61;
export const KVM_CAP_XSAVE = 55;
export const KVM_CAP_XCRS = 56;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_XSAVE2 = 208;
/** KVM_SET_TSC_KHZ on the VM fd sets the default of vCPUs created after. */
export const KVM_CAP_VM_TSC_CONTROL = 214;

/** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's flags: CLEAR_DIRTY_LOG re-protects, the log starts all set. */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
export const KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;

// -------- structs --------
export const kvm_userspace_memory_region = defineStruct('kvm_userspace_memory_region', {
  slot: u32, flags: u32, guest_phys_addr: u64, memory_size: u64, userspace_addr: u64,
});
/** kvm_userspace_memory_region.flags */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;

/** `dirty_bitmap` is a user pointer (a union with `void *` in the header). */
export const kvm_dirty_log = defineStruct('kvm_dirty_log', { slot: u32, padding1: u32, dirty_bitmap: u64 });
export const kvm_clear_dirty_log = defineStruct('kvm_clear_dirty_log', {
  slot: u32, num_pages: u32, first_page: u64, dirty_bitmap: u64,
});
export const kvm_enable_cap = defineStruct('kvm_enable_cap', { cap: u32, flags: u32, args: array(u64, 4), pad: array(u8, 64) });

export const kvm_regs = defineStruct('kvm_regs', {
  rax: u64, rbx: u64, rcx: u64, rdx: u64, rsi: u64, rdi: u64, rsp: u64, rbp: u64,
  r8: u64, r9: u64, r10: u64, r11: u64, r12: u64, r13: u64, r14: u64, r15: u64,
  rip: u64, rflags: u64,
});
export const kvm_segment = defineStruct('kvm_segment', {
  base: u64, limit: u32, selector: u16, type: u8, present: u8, dpl: u8, db: u8, s: u8, l: u8, g: u8, avl: u8,
  unusable: u8, padding: u8,
});
export const kvm_dtable = defineStruct('kvm_dtable', { base: u64, limit: u16, padding: array(u16, 3) });
export const kvm_sregs = defineStruct('kvm_sregs', {
  cs: kvm_segment, ds: kvm_segment, es: kvm_segment, fs: kvm_segment, gs: kvm_segment, ss: kvm_segment,
  tr: kvm_segment, ldt: kvm_segment, gdt: kvm_dtable, idt: kvm_dtable,
  cr0: u64, cr2: u64, cr3: u64, cr4: u64, cr8: u64, efer: u64, apic_base: u64, interrupt_bitmap: array(u64, 4),
});
export const kvm_fpu = defineStruct('kvm_fpu', {
  fpr: array(u8, 128), fcw: u16, fsw: u16, ftwx: u8, pad1: u8, last_opcode: u16, last_ip: u64, last_dp: u64,
  xmm: array(u8, 256), mxcsr: u32, pad2: u32,
});
/** The legacy 4 KiB XSAVE area; KVM_GET_XSAVE2 may return more (KVM_CAP_XSAVE2 says how much). */
export const kvm_xsave = defineStruct('kvm_xsave', { region: array(u32, 1024) });
export const kvm_xcr = defineStruct('kvm_xcr', { xcr: u32, reserved: u32, value: u64 });
export const KVM_MAX_XCRS = 16;
export const kvm_xcrs = defineStruct('kvm_xcrs', {
  nr_xcrs: u32, flags: u32, xcrs: array(kvm_xcr, KVM_MAX_XCRS), padding: array(u64, 16),
});
export const kvm_msr_entry = defineStruct('kvm_msr_entry', { index: u32, reserved: u32, data: u64 });
export const kvm_msrs = defineStruct('kvm_msrs', { nmsrs: u32, pad: u32, entries: flex(kvm_msr_entry) });
export const kvm_msr_list = defineStruct('kvm_msr_list', { nmsrs: u32, indices: flex(u32) });
export const kvm_vcpu_events = defineStruct('kvm_vcpu_events', { bytes: array(u8, 64) });
export const kvm_mp_state = defineStruct('kvm_mp_state', { mp_state: u32 });
export const KVM_MP_STATE_RUNNABLE = 0;
export const KVM_MP_STATE_UNINITIALIZED = 1;
export const KVM_MP_STATE_INIT_RECEIVED = 2;
export const KVM_MP_STATE_HALTED = 3;
export const KVM_MP_STATE_SIPI_RECEIVED = 4;
export const kvm_debugregs = defineStruct('kvm_debugregs', {
  db: array(u64, 4), dr6: u64, dr7: u64, flags: u64, reserved: array(u64, 9),
});
export const KVM_APIC_REG_SIZE = 0x400;
export const kvm_lapic_state = defineStruct('kvm_lapic_state', { regs: array(u8, KVM_APIC_REG_SIZE) });
export const kvm_clock_data = defineStruct('kvm_clock_data', {
  clock: u64, flags: u32, pad0: u32, realtime: u64, host_tsc: u64, pad: array(u32, 4),
});
/** kvm_clock_data.flags */
export const KVM_CLOCK_TSC_STABLE = 2;
export const kvm_cpuid_entry2 = defineStruct('kvm_cpuid_entry2', {
  function: u32, index: u32, flags: u32, eax: u32, ebx: u32, ecx: u32, edx: u32, padding: array(u32, 3),
});
export const kvm_cpuid2 = defineStruct('kvm_cpuid2', { nent: u32, padding: u32, entries: flex(kvm_cpuid_entry2) });
/** The most CPUID entries KVM_GET_SUPPORTED_CPUID answers with (KVM_MAX_CPUID_ENTRIES). */
export const KVM_MAX_CPUID_ENTRIES = 256;

// -------- the in-kernel irqchip and PIT (x86) --------
/** One 8259 PIC of the in-kernel pair (KVM_GET_IRQCHIP / KVM_SET_IRQCHIP). */
export const kvm_pic_state = defineStruct('kvm_pic_state', {
  last_irr: u8, irr: u8, imr: u8, isr: u8, priority_add: u8, irq_base: u8, read_reg_select: u8, poll: u8,
  special_mask: u8, init_state: u8, auto_eoi: u8, rotate_on_auto_eoi: u8, special_fully_nested_mode: u8, init4: u8,
  elcr: u8, elcr_mask: u8,
});
/** Pins (redirection table entries) of KVM's IOAPIC. */
export const KVM_IOAPIC_NUM_PINS = 24;
/**
 * The in-kernel IOAPIC. Each redirection entry is the header's union of `__u64 bits` with the
 * bit fields (vector, delivery mode, ..., mask, dest_id): carried whole as `bits`.
 */
export const kvm_ioapic_state = defineStruct('kvm_ioapic_state', {
  base_address: u64, ioregsel: u32, id: u32, irr: u32, pad: u32, redirtbl: array(u64, KVM_IOAPIC_NUM_PINS),
});
/** kvm_irqchip.chip_id */
export const KVM_IRQCHIP_PIC_MASTER = 0;
export const KVM_IRQCHIP_PIC_SLAVE = 1;
export const KVM_IRQCHIP_IOAPIC = 2;
export const KVM_NR_IRQCHIPS = 3;
/** One chip of the in-kernel irqchip, by `chip_id`: a PIC or the IOAPIC in a union of 512 bytes. */
export const kvm_irqchip = defineStruct('kvm_irqchip', {
  chip_id: u32, pad: u32, ...union({ dummy: array(u8, 512), pic: kvm_pic_state, ioapic: kvm_ioapic_state }),
});
/** KVM_CREATE_PIT2's argument. */
export const kvm_pit_config = defineStruct('kvm_pit_config', { flags: u32, pad: array(u32, 15) });
/** kvm_pit_config.flags: KVM answers port 0x61 (speaker control, and channel 2's output) itself. */
export const KVM_PIT_SPEAKER_DUMMY = 1;
/** One counter of the in-kernel 8254. `count_load_time` is the host's CLOCK_MONOTONIC in ns. */
export const kvm_pit_channel_state = defineStruct('kvm_pit_channel_state', {
  count: u32, latched_count: u16, count_latched: u8, status_latched: u8, status: u8, read_state: u8, write_state: u8,
  write_latch: u8, rw_mode: u8, mode: u8, bcd: u8, gate: u8, count_load_time: s64,
});
export const kvm_pit_state2 = defineStruct('kvm_pit_state2', {
  channels: array(kvm_pit_channel_state, 3), flags: u32, reserved: array(u32, 9),
});
/** kvm_pit_state2.flags */
export const KVM_PIT_FLAGS_HPET_LEGACY = 0x1;
export const KVM_PIT_FLAGS_SPEAKER_DATA_ON = 0x2;

/** An eventfd KVM signals on a guest write (KVM_IOEVENTFD), instead of exiting to the VMM. */
export const kvm_ioeventfd = defineStruct('kvm_ioeventfd', {
  datamatch: u64, addr: u64, len: u32, fd: s32, flags: u32, pad: array(u8, 36),
});
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
export const KVM_IOEVENTFD_FLAG_PIO = 1 << 1;
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2;
/** An eventfd whose signal raises a GSI of the in-kernel irqchip (KVM_IRQFD). */
export const kvm_irqfd = defineStruct('kvm_irqfd', { fd: u32, gsi: u32, flags: u32, resamplefd: u32, pad: array(u8, 16) });
export const KVM_IRQFD_FLAG_DEASSIGN = 1 << 0;
export const KVM_IRQFD_FLAG_RESAMPLE = 1 << 1;
/**
 * The GSI routing table of the in-kernel irqchip (KVM_SET_GSI_ROUTING replaces all of it): each
 * entry routes a GSI to a pin of the PIC or IOAPIC, or to an MSI message. The union `u` of the
 * header is spread here as its members `irqchip` and `msi` (its `pad[8]` only sizes it).
 */
export const kvm_irq_routing_irqchip = defineStruct('kvm_irq_routing_irqchip', { irqchip: u32, pin: u32 });
export const kvm_irq_routing_msi = defineStruct('kvm_irq_routing_msi', {
  address_lo: u32, address_hi: u32, data: u32, ...union({ pad: u32, devid: u32 }),
});
export const kvm_irq_routing_entry = defineStruct('kvm_irq_routing_entry', {
  gsi: u32, type: u32, flags: u32, pad: u32,
  ...union({ irqchip: kvm_irq_routing_irqchip, msi: kvm_irq_routing_msi, u_pad: array(u32, 8) }),
});
export const kvm_irq_routing = defineStruct('kvm_irq_routing', { nr: u32, flags: u32, entries: flex(kvm_irq_routing_entry) });
/** kvm_irq_routing_entry.type */
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
export const KVM_IRQ_ROUTING_MSI = 2;
/** kvm_irq_routing_irqchip.irqchip takes the chip ids of kvm_irqchip (KVM_IRQCHIP_PIC_MASTER, ...). */
/** A level change on a GSI (KVM_IRQ_LINE_STATUS answers in `status`: <0 no route took it, 0 coalesced, >0 delivered). */
export const kvm_irq_level = defineStruct('kvm_irq_level', { ...union({ irq: u32, status: s32 }), level: u32 });
/** A message-signalled interrupt injected by the VMM (KVM_SIGNAL_MSI): what a device wrote to the APIC's window. */
export const kvm_msi = defineStruct('kvm_msi', { address_lo: u32, address_hi: u32, data: u32, flags: u32, devid: u32, pad: array(u8, 12) });

// -------- struct kvm_run (the mmapped page of a vCPU fd) --------
export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_EXCEPTION = 1;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_DEBUG = 4;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_SYSTEM_EVENT = 24;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

export const kvm_run_io = defineStruct('kvm_run_io', { direction: u8, size: u8, port: u16, count: u32, data_offset: u64 });
export const kvm_run_mmio = defineStruct('kvm_run_mmio', { phys_addr: u64, data: array(u8, 8), len: u32, is_write: u8 });
export const kvm_run_fail_entry = defineStruct('kvm_run_fail_entry', { hardware_entry_failure_reason: u64, cpu: u32 });
export const kvm_run_hw = defineStruct('kvm_run_hw', { hardware_exit_reason: u64 });
export const kvm_run_internal = defineStruct('kvm_run_internal', { suberror: u32, ndata: u32, data: array(u64, 16) });
/**
 * The head of struct kvm_run: the fields before and in the exit union (256 bytes), by their
 * kernel offsets. The register sync area after it is not used.
 */
export const kvm_run = defineStruct('kvm_run', {
  request_interrupt_window: u8, immediate_exit: u8, padding1: array(u8, 6),
  exit_reason: u32, ready_for_interrupt_injection: u8, if_flag: u8, flags: u16,
  cr8: u64, apic_base: u64,
  ...union({
    io: kvm_run_io, mmio: kvm_run_mmio, fail_entry: kvm_run_fail_entry, internal: kvm_run_internal,
    hw: kvm_run_hw, padding: array(u8, 256),
  }),
});

// -------- VM ioctls --------
export const KVM_CREATE_VCPU = _IO(KVMIO, 0x41);
export const KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, kvm_dirty_log.size);
export const KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, kvm_userspace_memory_region.size);
export const KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47);
export const KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, 8);
export const KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60);
export const KVM_IRQ_LINE_STATUS = _IOWR(KVMIO, 0x67, kvm_irq_level.size);
export const KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6a, kvm_irq_routing.size);
export const KVM_GET_IRQCHIP = _IOWR(KVMIO, 0x62, kvm_irqchip.size);
/** The header declares it _IOR (a historical slip KVM keeps for the ABI): so must we. */
export const KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, kvm_irqchip.size);
export const KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, kvm_pit_config.size);
export const KVM_GET_PIT2 = _IOR(KVMIO, 0x9f, kvm_pit_state2.size);
export const KVM_SET_PIT2 = _IOW(KVMIO, 0xa0, kvm_pit_state2.size);
export const KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, kvm_clock_data.size);
export const KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, kvm_clock_data.size);
export const KVM_IRQFD = _IOW(KVMIO, 0x76, kvm_irqfd.size);
export const KVM_SIGNAL_MSI = _IOW(KVMIO, 0xa5, kvm_msi.size);
export const KVM_IOEVENTFD = _IOW(KVMIO, 0x79, kvm_ioeventfd.size);
export const KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, kvm_enable_cap.size);
export const KVM_CLEAR_DIRTY_LOG = _IOWR(KVMIO, 0xc0, kvm_clear_dirty_log.size);

// -------- system ioctls that take structs --------
export const KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, kvm_msr_list.size);
export const KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, kvm_cpuid2.size);

// -------- vCPU ioctls --------
export const KVM_RUN = _IO(KVMIO, 0x80);
export const KVM_GET_REGS = _IOR(KVMIO, 0x81, kvm_regs.size);
export const KVM_SET_REGS = _IOW(KVMIO, 0x82, kvm_regs.size);
export const KVM_GET_SREGS = _IOR(KVMIO, 0x83, kvm_sregs.size);
export const KVM_SET_SREGS = _IOW(KVMIO, 0x84, kvm_sregs.size);
export const KVM_GET_MSRS = _IOWR(KVMIO, 0x88, kvm_msrs.size);
export const KVM_SET_MSRS = _IOW(KVMIO, 0x89, kvm_msrs.size);
export const KVM_GET_FPU = _IOR(KVMIO, 0x8c, kvm_fpu.size);
export const KVM_SET_FPU = _IOW(KVMIO, 0x8d, kvm_fpu.size);
export const KVM_GET_LAPIC = _IOR(KVMIO, 0x8e, kvm_lapic_state.size);
export const KVM_SET_LAPIC = _IOW(KVMIO, 0x8f, kvm_lapic_state.size);
export const KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, kvm_cpuid2.size);
export const KVM_GET_CPUID2 = _IOWR(KVMIO, 0x91, kvm_cpuid2.size);
export const KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, kvm_mp_state.size);
export const KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, kvm_mp_state.size);
export const KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9f, kvm_vcpu_events.size);
export const KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xa0, kvm_vcpu_events.size);
export const KVM_GET_DEBUGREGS = _IOR(KVMIO, 0xa1, kvm_debugregs.size);
export const KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xa2, kvm_debugregs.size);
export const KVM_GET_XSAVE = _IOR(KVMIO, 0xa4, kvm_xsave.size);
export const KVM_SET_XSAVE = _IOW(KVMIO, 0xa5, kvm_xsave.size);
export const KVM_GET_XCRS = _IOR(KVMIO, 0xa6, kvm_xcrs.size);
export const KVM_SET_XCRS = _IOW(KVMIO, 0xa7, kvm_xcrs.size);
export const KVM_GET_XSAVE2 = _IOR(KVMIO, 0xcf, kvm_xsave.size);
/** A vCPU's TSC frequency in kHz: the argument (SET) or the return value (GET), no struct. */
export const KVM_SET_TSC_KHZ = _IO(KVMIO, 0xa2);
export const KVM_GET_TSC_KHZ = _IO(KVMIO, 0xa3);

/** The system ioctls of /dev/kvm, by name. */
export const KVM_SYSTEM_IOCTLS = {
  KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE, KVM_GET_MSR_INDEX_LIST,
  KVM_GET_SUPPORTED_CPUID,
} as const;
/** The ioctls of a VM fd, by name. */
export const KVM_VM_IOCTLS = {
  KVM_CHECK_EXTENSION, KVM_CREATE_VCPU, KVM_GET_DIRTY_LOG, KVM_SET_USER_MEMORY_REGION, KVM_SET_TSS_ADDR,
  KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP, KVM_SET_CLOCK, KVM_GET_CLOCK, KVM_ENABLE_CAP, KVM_CLEAR_DIRTY_LOG,
  KVM_IRQFD, KVM_IOEVENTFD, KVM_SIGNAL_MSI, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_CREATE_PIT2, KVM_GET_PIT2,
  KVM_SET_PIT2, KVM_SET_GSI_ROUTING, KVM_IRQ_LINE_STATUS,
} as const;
/** The ioctls of a vCPU fd, by name. */
export const KVM_VCPU_IOCTLS = {
  KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_FPU,
  KVM_SET_FPU, KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_SET_CPUID2, KVM_GET_CPUID2, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
  KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, KVM_GET_XSAVE, KVM_SET_XSAVE,
  KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_XSAVE2, KVM_SET_TSC_KHZ, KVM_GET_TSC_KHZ,
} as const;
