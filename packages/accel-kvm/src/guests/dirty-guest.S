# dirty-guest.S: a bare-metal x86 guest that dirties a given share of its RAM and stops, for
# measuring the dirty log: one dword in every ecx-th page from edi up to ebp, then a write to
# port 0x12 and HLT. Started like pages-guest.S (32-bit protected mode, flat segments, paging off).
# Assembled by tools/kvm/build-guest.sh into dirty-guest.ts and dirty-guest.lst.

    .code32
    .text
    .globl _start
_start:
    shl     $12, %ecx               # stride in bytes
again:
    mov     %eax, (%edi)            # dirty this page
    add     %ecx, %edi
    cmp     %ebp, %edi
    jb      again
    mov     $0x12, %dx
    out     %eax, %dx               # done
    hlt
