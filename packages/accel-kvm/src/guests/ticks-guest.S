# ticks-guest.S: a bare-metal x86 guest that counts the in-kernel PIT's ticks, delivered as an OS
# on KVM takes them: through the IOAPIC to its local APIC. It loads a flat GDT and an IDT with one
# gate, enables its local APIC, masks both PICs, routes IOAPIC pin 0 to vector 0x32 on APIC 0,
# and starts PIT channel 0 as a 100 Hz rate generator; then it halts with interrupts on, and
# reports each tick's count on port 0x10 (the first tick is 1). IRQ 0 arrives at pin 0 under
# KVM's default GSI routing, which vmmkit keeps (QEMU routes it to pin 2 instead, the interrupt
# source override its ACPI tables announce).
# Inputs: ebx a scratch area of 1 KiB (GDT at 0, pseudo-descriptors at 24 and 32, the count at
# 0x40, the IDT at 0x100), esp a stack.
# Started like pages-guest.S (32-bit protected mode, flat segments, paging off).
# Assembled by tools/kvm/build-guest.sh into ticks-guest.ts and ticks-guest.lst.

    .code32
    .set APIC_SVR, 0xfee000f0
    .set APIC_EOI, 0xfee000b0
    .set IOREGSEL, 0xfec00000
    .set IOWIN, 0xfec00010
    .set VECTOR, 0x32
    .set DIVISOR, 11932                 # 1193182 Hz / 100
    .text
    .globl _start
_start:
    movl    $0, 0(%ebx)                 # null descriptor
    movl    $0, 4(%ebx)
    movl    $0x0000ffff, 8(%ebx)        # 0x08: flat 32-bit code
    movl    $0x00cf9a00, 12(%ebx)
    movl    $0x0000ffff, 16(%ebx)       # 0x10: flat 32-bit data
    movl    $0x00cf9200, 20(%ebx)
    movw    $23, 24(%ebx)
    mov     %ebx, 26(%ebx)
    lgdt    24(%ebx)
    call    1f                          # where the handler is (the code loads anywhere)
1:  pop     %eax
    add     $(tick - 1b), %eax
    lea     0x100+VECTOR*8(%ebx), %edx  # the vector's gate
    mov     %eax, %esi
    and     $0xffff, %esi
    or      $0x00080000, %esi           # selector 0x08, offset 15:0
    mov     %esi, (%edx)
    and     $0xffff0000, %eax
    or      $0x8e00, %eax               # present, 32-bit interrupt gate, offset 31:16
    mov     %eax, 4(%edx)
    movw    $(VECTOR*8+7), 32(%ebx)
    lea     0x100(%ebx), %eax
    mov     %eax, 34(%ebx)
    lidt    32(%ebx)
    movl    $0x1ff, APIC_SVR            # local APIC on, spurious vector 0xff
    mov     $0xff, %al                  # both PICs masked: IRQ 0 comes through the IOAPIC only
    out     %al, $0x21
    out     %al, $0xa1
    movl    $0x10, IOREGSEL             # pin 0, low: the vector, fixed, edge, unmasked
    movl    $VECTOR, IOWIN
    movl    $0x11, IOREGSEL             # pin 0, high: APIC 0
    movl    $0, IOWIN
    movl    $0, 0x40(%ebx)
    mov     $0x34, %al                  # channel 0, lobyte/hibyte, mode 2, binary
    out     %al, $0x43
    mov     $(DIVISOR & 0xff), %al
    out     %al, $0x40
    mov     $(DIVISOR >> 8), %al
    out     %al, $0x40
wait:
    sti                                 # the tick can come only in this HLT
    hlt
    cli                                 # woken by something else (a kick): wait again
    jmp     wait
ticked:
    mov     0x40(%ebx), %eax
    mov     $0x10, %dx
    out     %eax, %dx                   # the count
    jmp     wait

# The tick: count it and end it at the local APIC (KVM's PIT sends the next only then). It can
# only come in the HLT of `wait`, so instead of returning (IRET, which kvm_pvm cannot emulate in
# 32-bit protected mode) it drops its frame and goes on at `ticked` with interrupts off.
tick:
    add     $12, %esp                   # EIP, CS, EFLAGS
    incl    0x40(%ebx)
    movl    $0, APIC_EOI
    jmp     ticked
