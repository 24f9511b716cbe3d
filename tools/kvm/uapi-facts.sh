#!/usr/bin/env bash
# Measure the KVM uAPI facts core/src/uapi/kvm.ts declares (struct sizes, member offsets and
# sizes, ioctl numbers, constants) from the host's <linux/kvm.h> with gcc, as JSON on stdout.
# Run by hand when the declarations change; the output is committed as
# packages/core/test/fixtures/kvm-uapi-x86_64.json and checked by uapi-kvm-abi.test.ts.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/facts.c" <<'C'
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
static int first = 1;
#define SEP() (first ? (first = 0, "") : ",")
#define S(t) printf("%s\"%s\":{\"size\":%zu,\"fields\":{", SEP(), #t, sizeof(struct t)); first = 1
#define F(t, m) printf("%s\"%s\":[%zu,%zu]", SEP(), #m, offsetof(struct t, m), sizeof(((struct t *)0)->m))
#define E() printf("}}"); first = 0
#define C(n) printf("%s\"%s\":%lu", SEP(), #n, (unsigned long)(n))
int main(void) {
  printf("{\"structs\":{"); first = 1;
  S(kvm_userspace_memory_region); F(kvm_userspace_memory_region, slot); F(kvm_userspace_memory_region, flags);
    F(kvm_userspace_memory_region, guest_phys_addr); F(kvm_userspace_memory_region, memory_size);
    F(kvm_userspace_memory_region, userspace_addr); E();
  S(kvm_dirty_log); F(kvm_dirty_log, slot); F(kvm_dirty_log, padding1); F(kvm_dirty_log, dirty_bitmap); E();
  S(kvm_clear_dirty_log); F(kvm_clear_dirty_log, slot); F(kvm_clear_dirty_log, num_pages);
    F(kvm_clear_dirty_log, first_page); F(kvm_clear_dirty_log, dirty_bitmap); E();
  S(kvm_enable_cap); F(kvm_enable_cap, cap); F(kvm_enable_cap, flags); F(kvm_enable_cap, args); F(kvm_enable_cap, pad); E();
  S(kvm_regs); F(kvm_regs, rax); F(kvm_regs, rsp); F(kvm_regs, r15); F(kvm_regs, rip); F(kvm_regs, rflags); E();
  S(kvm_segment); F(kvm_segment, base); F(kvm_segment, limit); F(kvm_segment, selector); F(kvm_segment, type);
    F(kvm_segment, present); F(kvm_segment, dpl); F(kvm_segment, db); F(kvm_segment, s); F(kvm_segment, l);
    F(kvm_segment, g); F(kvm_segment, avl); F(kvm_segment, unusable); F(kvm_segment, padding); E();
  S(kvm_dtable); F(kvm_dtable, base); F(kvm_dtable, limit); F(kvm_dtable, padding); E();
  S(kvm_sregs); F(kvm_sregs, cs); F(kvm_sregs, ldt); F(kvm_sregs, gdt); F(kvm_sregs, idt); F(kvm_sregs, cr0);
    F(kvm_sregs, cr3); F(kvm_sregs, cr4); F(kvm_sregs, efer); F(kvm_sregs, apic_base); F(kvm_sregs, interrupt_bitmap); E();
  S(kvm_fpu); F(kvm_fpu, fpr); F(kvm_fpu, fcw); F(kvm_fpu, ftwx); F(kvm_fpu, last_opcode); F(kvm_fpu, last_ip);
    F(kvm_fpu, xmm); F(kvm_fpu, mxcsr); E();
  S(kvm_xsave); F(kvm_xsave, region); E();
  S(kvm_xcr); F(kvm_xcr, xcr); F(kvm_xcr, value); E();
  S(kvm_xcrs); F(kvm_xcrs, nr_xcrs); F(kvm_xcrs, flags); F(kvm_xcrs, xcrs); F(kvm_xcrs, padding); E();
  S(kvm_msr_entry); F(kvm_msr_entry, index); F(kvm_msr_entry, reserved); F(kvm_msr_entry, data); E();
  S(kvm_msrs); F(kvm_msrs, nmsrs); F(kvm_msrs, pad); printf(",\"entries\":[%zu,0]", offsetof(struct kvm_msrs, entries)); E();
  S(kvm_msr_list); F(kvm_msr_list, nmsrs); printf(",\"indices\":[%zu,0]", offsetof(struct kvm_msr_list, indices)); E();
  S(kvm_vcpu_events); E();
  S(kvm_mp_state); F(kvm_mp_state, mp_state); E();
  S(kvm_debugregs); F(kvm_debugregs, db); F(kvm_debugregs, dr6); F(kvm_debugregs, dr7); F(kvm_debugregs, flags);
    F(kvm_debugregs, reserved); E();
  S(kvm_lapic_state); F(kvm_lapic_state, regs); E();
  S(kvm_clock_data); F(kvm_clock_data, clock); F(kvm_clock_data, flags); F(kvm_clock_data, realtime);
    F(kvm_clock_data, host_tsc); F(kvm_clock_data, pad); E();
  S(kvm_cpuid_entry2); F(kvm_cpuid_entry2, function); F(kvm_cpuid_entry2, index); F(kvm_cpuid_entry2, flags);
    F(kvm_cpuid_entry2, eax); F(kvm_cpuid_entry2, edx); F(kvm_cpuid_entry2, padding); E();
  S(kvm_cpuid2); F(kvm_cpuid2, nent); F(kvm_cpuid2, padding); printf(",\"entries\":[%zu,0]", offsetof(struct kvm_cpuid2, entries)); E();
  S(kvm_ioeventfd); F(kvm_ioeventfd, datamatch); F(kvm_ioeventfd, addr); F(kvm_ioeventfd, len); F(kvm_ioeventfd, fd);
    F(kvm_ioeventfd, flags); F(kvm_ioeventfd, pad); E();
  S(kvm_irqfd); F(kvm_irqfd, fd); F(kvm_irqfd, gsi); F(kvm_irqfd, flags); F(kvm_irqfd, resamplefd); F(kvm_irqfd, pad); E();
  S(kvm_msi); F(kvm_msi, address_lo); F(kvm_msi, address_hi); F(kvm_msi, data); F(kvm_msi, flags); F(kvm_msi, devid); F(kvm_msi, pad); E();
  S(kvm_irq_routing_irqchip); F(kvm_irq_routing_irqchip, irqchip); F(kvm_irq_routing_irqchip, pin); E();
  S(kvm_irq_routing_msi); F(kvm_irq_routing_msi, address_lo); F(kvm_irq_routing_msi, address_hi); F(kvm_irq_routing_msi, data);
    F(kvm_irq_routing_msi, pad); F(kvm_irq_routing_msi, devid); E();
  S(kvm_irq_routing_entry); F(kvm_irq_routing_entry, gsi); F(kvm_irq_routing_entry, type); F(kvm_irq_routing_entry, flags);
    F(kvm_irq_routing_entry, pad);
    printf(",\"irqchip\":[%zu,%zu]", offsetof(struct kvm_irq_routing_entry, u.irqchip), sizeof(((struct kvm_irq_routing_entry *)0)->u.irqchip));
    printf(",\"msi\":[%zu,%zu]", offsetof(struct kvm_irq_routing_entry, u.msi), sizeof(((struct kvm_irq_routing_entry *)0)->u.msi));
    printf(",\"u_pad\":[%zu,%zu]", offsetof(struct kvm_irq_routing_entry, u.pad), sizeof(((struct kvm_irq_routing_entry *)0)->u.pad)); E();
  S(kvm_irq_routing); F(kvm_irq_routing, nr); F(kvm_irq_routing, flags); printf(",\"entries\":[%zu,0]", offsetof(struct kvm_irq_routing, entries)); E();
  S(kvm_irq_level); F(kvm_irq_level, irq); F(kvm_irq_level, status); F(kvm_irq_level, level); E();
  S(kvm_pic_state); F(kvm_pic_state, last_irr); F(kvm_pic_state, irr); F(kvm_pic_state, imr); F(kvm_pic_state, isr);
    F(kvm_pic_state, priority_add); F(kvm_pic_state, irq_base); F(kvm_pic_state, read_reg_select); F(kvm_pic_state, poll);
    F(kvm_pic_state, special_mask); F(kvm_pic_state, init_state); F(kvm_pic_state, auto_eoi);
    F(kvm_pic_state, rotate_on_auto_eoi); F(kvm_pic_state, special_fully_nested_mode); F(kvm_pic_state, init4);
    F(kvm_pic_state, elcr); F(kvm_pic_state, elcr_mask); E();
  S(kvm_ioapic_state); F(kvm_ioapic_state, base_address); F(kvm_ioapic_state, ioregsel); F(kvm_ioapic_state, id);
    F(kvm_ioapic_state, irr); F(kvm_ioapic_state, pad); F(kvm_ioapic_state, redirtbl); E();
  S(kvm_irqchip); F(kvm_irqchip, chip_id); F(kvm_irqchip, pad);
    printf(",\"dummy\":[%zu,%zu],\"pic\":[%zu,%zu],\"ioapic\":[%zu,%zu]",
      offsetof(struct kvm_irqchip, chip.dummy), sizeof(((struct kvm_irqchip *)0)->chip.dummy),
      offsetof(struct kvm_irqchip, chip.pic), sizeof(((struct kvm_irqchip *)0)->chip.pic),
      offsetof(struct kvm_irqchip, chip.ioapic), sizeof(((struct kvm_irqchip *)0)->chip.ioapic)); E();
  S(kvm_pit_config); F(kvm_pit_config, flags); F(kvm_pit_config, pad); E();
  S(kvm_pit_channel_state); F(kvm_pit_channel_state, count); F(kvm_pit_channel_state, latched_count);
    F(kvm_pit_channel_state, count_latched); F(kvm_pit_channel_state, status_latched); F(kvm_pit_channel_state, status);
    F(kvm_pit_channel_state, read_state); F(kvm_pit_channel_state, write_state); F(kvm_pit_channel_state, write_latch);
    F(kvm_pit_channel_state, rw_mode); F(kvm_pit_channel_state, mode); F(kvm_pit_channel_state, bcd);
    F(kvm_pit_channel_state, gate); F(kvm_pit_channel_state, count_load_time); E();
  S(kvm_pit_state2); F(kvm_pit_state2, channels); F(kvm_pit_state2, flags); F(kvm_pit_state2, reserved); E();
  S(kvm_run); F(kvm_run, request_interrupt_window); F(kvm_run, immediate_exit); F(kvm_run, exit_reason);
    F(kvm_run, ready_for_interrupt_injection); F(kvm_run, if_flag); F(kvm_run, flags); F(kvm_run, cr8);
    F(kvm_run, apic_base); F(kvm_run, io); F(kvm_run, mmio); F(kvm_run, fail_entry); F(kvm_run, internal);
    F(kvm_run, hw); E();
  printf("},\"runUnion\":{"); first = 1;
  printf("\"io.direction\":%zu,\"io.size\":%zu,\"io.port\":%zu,\"io.count\":%zu,\"io.data_offset\":%zu,",
    offsetof(struct kvm_run, io.direction), offsetof(struct kvm_run, io.size), offsetof(struct kvm_run, io.port),
    offsetof(struct kvm_run, io.count), offsetof(struct kvm_run, io.data_offset));
  printf("\"mmio.phys_addr\":%zu,\"mmio.data\":%zu,\"mmio.len\":%zu,\"mmio.is_write\":%zu,",
    offsetof(struct kvm_run, mmio.phys_addr), offsetof(struct kvm_run, mmio.data), offsetof(struct kvm_run, mmio.len),
    offsetof(struct kvm_run, mmio.is_write));
  printf("\"internal.suberror\":%zu,\"internal.ndata\":%zu,\"internal.data\":%zu,\"kvm_valid_regs\":%zu",
    offsetof(struct kvm_run, internal.suberror), offsetof(struct kvm_run, internal.ndata),
    offsetof(struct kvm_run, internal.data), offsetof(struct kvm_run, kvm_valid_regs));
  printf("},\"constants\":{"); first = 1;
  C(KVM_API_VERSION); C(KVM_GET_API_VERSION); C(KVM_CREATE_VM); C(KVM_CHECK_EXTENSION); C(KVM_GET_VCPU_MMAP_SIZE);
  C(KVM_GET_MSR_INDEX_LIST); C(KVM_GET_SUPPORTED_CPUID);
  C(KVM_CAP_IRQCHIP); C(KVM_CAP_USER_MEMORY); C(KVM_CAP_SET_TSS_ADDR); C(KVM_CAP_EXT_CPUID); C(KVM_CAP_NR_VCPUS);
  C(KVM_CAP_NR_MEMSLOTS); C(KVM_CAP_MP_STATE); C(KVM_CAP_SYNC_MMU); C(KVM_CAP_IRQFD); C(KVM_CAP_SIGNAL_MSI); C(KVM_CAP_PIT2);
  C(KVM_CAP_IOEVENTFD); C(KVM_CAP_ADJUST_CLOCK); C(KVM_CAP_VCPU_EVENTS); C(KVM_CAP_DEBUGREGS); C(KVM_CAP_XSAVE);
  C(KVM_CAP_XCRS); C(KVM_CAP_MAX_VCPUS); C(KVM_CAP_IMMEDIATE_EXIT); C(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  C(KVM_CAP_XSAVE2); C(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE); C(KVM_DIRTY_LOG_INITIALLY_SET);
  C(KVM_MEM_LOG_DIRTY_PAGES); C(KVM_MEM_READONLY); C(KVM_MAX_XCRS); C(KVM_MP_STATE_RUNNABLE);
  C(KVM_MP_STATE_UNINITIALIZED); C(KVM_MP_STATE_INIT_RECEIVED); C(KVM_MP_STATE_HALTED); C(KVM_MP_STATE_SIPI_RECEIVED);
  C(KVM_APIC_REG_SIZE); C(KVM_CLOCK_TSC_STABLE);
  C(KVM_EXIT_UNKNOWN); C(KVM_EXIT_EXCEPTION); C(KVM_EXIT_IO); C(KVM_EXIT_HYPERCALL); C(KVM_EXIT_DEBUG); C(KVM_EXIT_HLT);
  C(KVM_EXIT_MMIO); C(KVM_EXIT_IRQ_WINDOW_OPEN); C(KVM_EXIT_SHUTDOWN); C(KVM_EXIT_FAIL_ENTRY); C(KVM_EXIT_INTR);
  C(KVM_EXIT_SYSTEM_EVENT); C(KVM_EXIT_INTERNAL_ERROR); C(KVM_EXIT_IO_IN); C(KVM_EXIT_IO_OUT);
  C(KVM_CREATE_VCPU); C(KVM_GET_DIRTY_LOG); C(KVM_SET_USER_MEMORY_REGION); C(KVM_SET_TSS_ADDR);
  C(KVM_SET_IDENTITY_MAP_ADDR); C(KVM_CREATE_IRQCHIP); C(KVM_SET_CLOCK); C(KVM_GET_CLOCK); C(KVM_ENABLE_CAP);
  C(KVM_CLEAR_DIRTY_LOG); C(KVM_RUN); C(KVM_GET_REGS); C(KVM_SET_REGS); C(KVM_GET_SREGS); C(KVM_SET_SREGS);
  C(KVM_GET_MSRS); C(KVM_SET_MSRS); C(KVM_GET_FPU); C(KVM_SET_FPU); C(KVM_GET_LAPIC); C(KVM_SET_LAPIC);
  C(KVM_SET_CPUID2); C(KVM_GET_CPUID2); C(KVM_GET_MP_STATE); C(KVM_SET_MP_STATE); C(KVM_GET_VCPU_EVENTS);
  C(KVM_SET_VCPU_EVENTS); C(KVM_GET_DEBUGREGS); C(KVM_SET_DEBUGREGS); C(KVM_GET_XSAVE); C(KVM_SET_XSAVE);
  C(KVM_GET_XCRS); C(KVM_SET_XCRS); C(KVM_GET_XSAVE2); C(KVM_IRQFD); C(KVM_IOEVENTFD); C(KVM_SIGNAL_MSI);
  C(KVM_IOEVENTFD_FLAG_DATAMATCH); C(KVM_IOEVENTFD_FLAG_PIO); C(KVM_IOEVENTFD_FLAG_DEASSIGN);
  C(KVM_IRQFD_FLAG_DEASSIGN); C(KVM_IRQFD_FLAG_RESAMPLE);
  C(KVM_CAP_IRQ_ROUTING); C(KVM_IRQ_ROUTING_IRQCHIP); C(KVM_IRQ_ROUTING_MSI); C(KVM_SET_GSI_ROUTING);
  C(KVM_IRQ_LINE_STATUS);
  C(KVM_CAP_PIT_STATE2); C(KVM_CAP_TSC_CONTROL); C(KVM_CAP_GET_TSC_KHZ); C(KVM_CAP_VM_TSC_CONTROL);
  C(KVM_IOAPIC_NUM_PINS); C(KVM_IRQCHIP_PIC_MASTER); C(KVM_IRQCHIP_PIC_SLAVE); C(KVM_IRQCHIP_IOAPIC); C(KVM_NR_IRQCHIPS);
  C(KVM_PIT_SPEAKER_DUMMY); C(KVM_PIT_FLAGS_HPET_LEGACY); C(KVM_PIT_FLAGS_SPEAKER_DATA_ON);
  C(KVM_GET_IRQCHIP); C(KVM_SET_IRQCHIP); C(KVM_CREATE_PIT2); C(KVM_GET_PIT2); C(KVM_SET_PIT2);
  C(KVM_SET_TSC_KHZ); C(KVM_GET_TSC_KHZ);
  printf("}}\n");
  return 0;
}
C
gcc -Wall -o "$dir/facts" "$dir/facts.c"
"$dir/facts"
