# exits-guest.S: a bare-metal x86 guest that exits to the VMM as fast as it can, for measuring
# the run loop: ecx port writes of eax to port 0x10, then one to port 0x12, then HLT.
# Started like pages-guest.S (32-bit protected mode, flat segments, paging off).
# Assembled by tools/kvm/build-guest.sh into exits-guest.ts and exits-guest.lst.

    .code32
    .text
    .globl _start
_start:
    mov     $0x10, %dx
again:
    out     %eax, %dx               # one exit
    dec     %ecx
    jnz     again
    mov     $0x12, %dx
    out     %eax, %dx               # done
    hlt
