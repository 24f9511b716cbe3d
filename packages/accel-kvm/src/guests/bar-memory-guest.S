# bar-memory-guest.S: a bare-metal x86 guest that places a 64-bit memory BAR of a PCI function
# through configuration mechanism #1, turns memory decoding on, and at once uses the BAR's memory:
# for testing that the VMM maps BAR memory (KVM memslots) before the config write's exit
# completes, so none of the accesses that follow exits.
#
# Started like pages-guest.S (32-bit protected mode, flat segments, paging off) with
#   ebx = the CONFIG_ADDRESS of the BAR's register (enable bit, bus 0, slot, register 0x10 + 4 * bar)
#   esi = the BAR's new address (the upper half is written 0)
#   edi = an offset in the BAR (the memory it writes)   ecx = dwords to write (at least 1)
#   eax = a seed   ebp = an offset in the BAR to write the seed to afterwards (a doorbell), 0: none
# It writes the BAR's two dwords, sets the command register's memory enable (bit 1), writes
# dword i = seed + i at BAR + edi + 4i, reads them back, reports their sum (mod 2^32) on port 0x11,
# writes the seed to BAR + ebp (if ebp is not 0), reports the seed on port 0x12, and halts.
# No stack is used (esp holds the seed).
# Assembled by tools/kvm/build-guest.sh into bar-memory-guest.ts and bar-memory-guest.lst.

    .code32
    .text
    .globl _start
_start:
    mov     %eax, %esp              # the seed
    # The BAR's lower dword, then its upper one (register + 4) as 0.
    mov     $0xcf8, %dx
    mov     %ebx, %eax
    out     %eax, %dx
    mov     $0xcfc, %dx
    mov     %esi, %eax
    out     %eax, %dx
    mov     $0xcf8, %dx
    lea     4(%ebx), %eax
    out     %eax, %dx
    mov     $0xcfc, %dx
    xor     %eax, %eax
    out     %eax, %dx
    # Memory decoding on: the command register (the low word of register 0x04).
    mov     $0xcf8, %dx
    mov     %ebx, %eax
    and     $0xffffff00, %eax
    or      $0x04, %eax
    out     %eax, %dx
    mov     $0xcfc, %dx
    in      %dx, %ax
    or      $0x2, %ax
    out     %ax, %dx
    # Fill ecx dwords from BAR + edi.
    add     %esi, %edi
    mov     %ecx, %ebx              # the count, kept
    mov     %esp, %eax
fill:
    mov     %eax, (%edi)
    add     $4, %edi
    inc     %eax
    dec     %ecx
    jnz     fill
    # Read them back, summing.
    mov     %ebx, %ecx
    shl     $2, %ebx
    sub     %ebx, %edi
    xor     %eax, %eax
sum:
    add     (%edi), %eax
    add     $4, %edi
    dec     %ecx
    jnz     sum
    mov     $0x11, %dx
    out     %eax, %dx               # the sum
    # The doorbell, if any.
    mov     %esp, %eax
    test    %ebp, %ebp
    jz      done
    mov     %eax, (%esi,%ebp)
done:
    mov     $0x12, %dx
    out     %eax, %dx               # the seed: done
    hlt
