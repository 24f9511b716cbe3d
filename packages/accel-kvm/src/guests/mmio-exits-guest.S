# mmio-exits-guest.S: a bare-metal x86 guest that makes MMIO exits as fast as it can, for
# measuring the path from a vCPU to a device's BAR: ecx 32-bit writes of eax to the MMIO
# address edi, then a write to port 0x12, then HLT.
# Started like pages-guest.S (32-bit protected mode, flat segments, paging off).
# Assembled by tools/kvm/build-guest.sh into mmio-exits-guest.ts and mmio-exits-guest.lst.

    .code32
    .text
    .globl _start
_start:
again:
    mov     %eax, (%edi)            # one MMIO exit
    dec     %ecx
    jnz     again
    mov     $0x12, %dx
    out     %eax, %dx               # done
    hlt
