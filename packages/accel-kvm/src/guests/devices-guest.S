# devices-guest.S: a bare-metal x86 guest that programs the in-kernel interrupt controllers and
# timer as an OS would at boot, for the migration tests of their state: both 8259 PICs through
# their ICW1-4 (vectors 0x20 and 0x28, the slave on IRQ 2) and a mask, the slave's ELCR (IRQs 9-11
# level-triggered), the IOAPIC's 24 redirection entries (entry i: vector 0x30 + i, masked,
# destination APIC i), and 8254 channel 0 (mode 2, the periodic tick of an OS, count 0x1234:
# about 256 Hz) and channel 2 (mode 3, count 0x533). IRQ 0 stays masked: its first tick latches
# in the master PIC's IRR and, never acknowledged, holds further ticks back (KVM reinjects
# unacknowledged PIT ticks only after an EOI). Then it writes to port 0x12 and halts with
# interrupts off.
# Started like pages-guest.S (32-bit protected mode, flat segments, paging off).
# Assembled by tools/kvm/build-guest.sh into devices-guest.ts and devices-guest.lst.

    .code32
    .text
    .globl _start
_start:
    # The master PIC: ICW1 (edge, cascade, ICW4 follows), ICW2 base 0x20, ICW3 slave on IR2,
    # ICW4 8086 mode; then OCW1: only IRQ 2 (the cascade) unmasked.
    mov     $0x11, %al
    out     %al, $0x20
    mov     $0x20, %al
    out     %al, $0x21
    mov     $0x04, %al
    out     %al, $0x21
    mov     $0x01, %al
    out     %al, $0x21
    mov     $0xfb, %al
    out     %al, $0x21
    # The slave PIC: base 0x28, cascade identity 2, 8086 mode; IRQ 14 unmasked.
    mov     $0x11, %al
    out     %al, $0xa0
    mov     $0x28, %al
    out     %al, $0xa1
    mov     $0x02, %al
    out     %al, $0xa1
    mov     $0x01, %al
    out     %al, $0xa1
    mov     $0xbf, %al
    out     %al, $0xa1
    # The slave's ELCR: IRQs 9, 10 and 11 level-triggered (as PCI INTx are).
    mov     $0x0e, %al
    mov     $0x4d1, %dx
    out     %al, %dx
    # The IOAPIC: IOREGSEL at 0xfec00000, IOWIN at 0xfec00010; entry i is registers 0x10 + 2i
    # (low: vector, mask bit 16) and 0x11 + 2i (high: destination in bits 24-31).
    mov     $0xfec00000, %edi
    xor     %ecx, %ecx
entry:
    lea     0x10(,%ecx,2), %eax
    mov     %eax, (%edi)
    lea     0x10030(%ecx), %eax     # masked, vector 0x30 + i
    mov     %eax, 0x10(%edi)
    lea     0x11(,%ecx,2), %eax
    mov     %eax, (%edi)
    mov     %ecx, %eax
    shl     $24, %eax               # destination APIC i
    mov     %eax, 0x10(%edi)
    inc     %ecx
    cmp     $24, %ecx
    jne     entry
    # The PIT: channel 0 lobyte/hibyte, mode 2 (rate generator), binary, count 0x1234.
    mov     $0x34, %al
    out     %al, $0x43
    mov     $0x34, %al
    out     %al, $0x40
    mov     $0x12, %al
    out     %al, $0x40
    # Channel 2 lobyte/hibyte, mode 3 (square wave), count 0x0533.
    mov     $0xb6, %al
    out     %al, $0x43
    mov     $0x33, %al
    out     %al, $0x42
    mov     $0x05, %al
    out     %al, $0x42
    mov     $0x12, %dx
    out     %eax, %dx               # done
    cli
    hlt
