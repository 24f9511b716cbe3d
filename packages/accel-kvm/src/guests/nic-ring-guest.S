# nic-ring-guest.S: a bare-metal x86 guest that drives the simulated nic (packages/sim's
# devices/nic.ts) the way a driver does, through the VM's PCI host bridge and MMIO, while it
# writes pseudo-random pages of its RAM.
#
# Started like pages-guest.S (32-bit protected mode, flat segments, paging off) with
#   ebx = its parameter block (below), esp = the top of a stack.
# The parameter block holds what the VMM chose and the guest's own state (so that a migration
# carries it with RAM), dwords at:
#   0 arena address   4 arena pages - 1 (a power of two minus one)   8 x, the generator's state
#  12 ring address   16 ring slots   20 packet size   24 packets per second   28 BAR0 address
#  32 BAR2 address   36 report mask  40 the nic's payload seed   44 page writes between polls
#  48 writes made    52 the next packet's sequence number   56 the ring's tail   60 config address
# It finds the nic (vendor 0x1234, device 0x4e49) by scanning slots 1-31 of bus 0 through
# configuration mechanism #1 (ports 0xcf8/0xcfc), places BAR0 and the 64-bit BAR2, enables
# memory decoding and bus mastering, resets the nic, sets up its receive ring, rings BAR2's
# doorbell and reads the count back, and starts receiving. Then, forever: `44` page writes as
# pages-guest.S makes them (counter and x into a qword of an arena page chosen by x), then a
# poll of the ring: every packet between the tail and the nic's head must carry the next
# sequence number, the packet size and the nic's payload (xorshift32 from seed ^ seq ^
# 0x9e3779b9), after which the tail moves past it.
# Reports on port I/O: 0x11 the generator's seed at the start; 0x10 the writes made every
# mask + 1 writes; 0x13 the packets checked after each poll that found some; 0x14 an error
# (code << 24 | the expected sequence number's low 24 bits), after which it halts. Codes:
# 1 no nic, 2 wrong NIC_ID, 3 doorbell count, 4 sequence number, 5 length, 6 payload.
# Assembled by tools/kvm/build-guest.sh into nic-ring-guest.ts (the bytes) and nic-ring-guest.lst.

    .set P_ARENA, 0
    .set P_MASK, 4
    .set P_X, 8
    .set P_RING, 12
    .set P_SLOTS, 16
    .set P_PKT, 20
    .set P_RATE, 24
    .set P_BAR0, 28
    .set P_BAR2, 32
    .set P_REPORT, 36
    .set P_SEED, 40
    .set P_BURST, 44
    .set P_COUNT, 48
    .set P_SEQ, 52
    .set P_TAIL, 56
    .set P_CFG, 60

    .set NIC_ID, 0x00
    .set NIC_CTRL, 0x04
    .set NIC_RX_RING_BASE, 0x10
    .set NIC_RX_RING_SIZE, 0x18
    .set NIC_RX_PKT_SIZE, 0x1c
    .set NIC_RX_HEAD, 0x20
    .set NIC_RX_TAIL, 0x24
    .set NIC_RATE_PPS, 0x28
    .set NIC_SEED, 0x4c
    .set NIC_DOORBELL, 0x4000

    .code32
    .text
    .globl _start
_start:
    mov     P_X(%ebx), %eax
    mov     $0x11, %dx
    out     %eax, %dx               # hello: the seed

    # Find the nic: slots 1-31 of bus 0, function 0.
    mov     $0x80000800, %esi       # enable | slot 1
scan:
    mov     %esi, %eax
    call    config_read
    cmp     $0x4e491234, %eax
    je      found
    add     $0x800, %esi
    cmp     $0x80010000, %esi       # past slot 31
    jne     scan
    mov     $1, %al
    jmp     fail
found:
    mov     %esi, P_CFG(%ebx)
    lea     0x10(%esi), %eax        # BAR0
    mov     P_BAR0(%ebx), %ecx
    call    config_write
    lea     0x18(%esi), %eax        # BAR2, low half
    mov     P_BAR2(%ebx), %ecx
    call    config_write
    lea     0x1c(%esi), %eax        # BAR2, high half (BAR3)
    xor     %ecx, %ecx
    call    config_write
    lea     0x04(%esi), %eax        # command: memory decode and bus master on
    call    config_read
    or      $0x6, %eax
    mov     %eax, %ecx
    lea     0x04(%esi), %eax
    call    config_write

    # The nic, through BAR0.
    mov     P_BAR0(%ebx), %edi
    cmpl    $0x4e494331, NIC_ID(%edi)
    je      1f
    mov     $2, %al
    jmp     fail
1:  movl    $0x80000000, NIC_CTRL(%edi)     # reset: sequence numbers start at 0
    mov     P_RING(%ebx), %eax
    mov     %eax, NIC_RX_RING_BASE(%edi)
    movl    $0, NIC_RX_RING_BASE+4(%edi)
    mov     P_PKT(%ebx), %eax
    mov     %eax, NIC_RX_PKT_SIZE(%edi)
    mov     P_SLOTS(%ebx), %eax
    mov     %eax, NIC_RX_RING_SIZE(%edi)    # a new ring: head = tail = 0
    mov     P_SEED(%ebx), %eax
    mov     %eax, NIC_SEED(%edi)
    mov     P_RATE(%ebx), %eax
    mov     %eax, NIC_RATE_PPS(%edi)
    movl    $0, P_SEQ(%ebx)
    movl    $0, P_TAIL(%ebx)
    mov     P_BAR2(%ebx), %edx
    movl    $1, NIC_DOORBELL(%edx)          # ring the doorbell once ...
    cmpl    $1, NIC_DOORBELL(%edx)          # ... and it counted once
    je      2f
    mov     $3, %al
    jmp     fail
2:  movl    $1, NIC_CTRL(%edi)              # receive

main:
    mov     P_BURST(%ebx), %ecx
writes:
    call    write_page
    dec     %ecx
    jnz     writes
    call    poll
    jmp     main

# One step of the generator: the counter and x into a qword of a page chosen by x.
write_page:
    mov     P_X(%ebx), %eax
    imul    $1103515245, %eax, %eax
    add     $12345, %eax
    mov     %eax, P_X(%ebx)
    mov     %eax, %edx
    shr     $16, %edx
    and     P_MASK(%ebx), %edx
    shl     $12, %edx
    add     P_ARENA(%ebx), %edx     # the page
    mov     %eax, %edi
    and     $0xff8, %edi            # the qword
    incl    P_COUNT(%ebx)
    mov     P_COUNT(%ebx), %esi
    mov     %esi, (%edx,%edi)
    mov     %eax, 4(%edx,%edi)
    test    P_REPORT(%ebx), %esi
    jnz     1f
    mov     %esi, %eax
    mov     $0x10, %dx
    out     %eax, %dx               # progress: the writes made
1:  ret

# Check every packet from the tail to the nic's head, then give the slots back.
poll:
    mov     P_BAR0(%ebx), %edi
    mov     NIC_RX_HEAD(%edi), %ebp
    mov     P_TAIL(%ebx), %ecx
    cmp     %ecx, %ebp
    je      polled
packet:
    mov     %ecx, %esi
    imul    P_PKT(%ebx), %esi
    add     P_RING(%ebx), %esi      # the slot
    mov     P_SEQ(%ebx), %eax
    cmp     (%esi), %eax
    jne     bad_seq
    cmpl    $0, 4(%esi)
    jne     bad_seq
    mov     P_PKT(%ebx), %eax
    cmp     8(%esi), %eax
    jne     bad_length
    push    %ecx
    mov     P_SEED(%ebx), %eax
    xor     P_SEQ(%ebx), %eax
    xor     $0x9e3779b9, %eax
    jnz     1f
    mov     $1, %eax                # xorshift32 never starts from 0
1:  mov     P_PKT(%ebx), %ecx
    sub     $16, %ecx
    shr     $2, %ecx                # payload dwords
    lea     16(%esi), %edi
word:
    mov     %eax, %edx
    shl     $13, %edx
    xor     %edx, %eax
    mov     %eax, %edx
    shr     $17, %edx
    xor     %edx, %eax
    mov     %eax, %edx
    shl     $5, %edx
    xor     %edx, %eax
    cmp     (%edi), %eax
    jne     bad_payload
    add     $4, %edi
    dec     %ecx
    jnz     word
    pop     %ecx
    incl    P_SEQ(%ebx)
    inc     %ecx
    cmp     P_SLOTS(%ebx), %ecx
    jne     2f
    xor     %ecx, %ecx
2:  cmp     %ecx, %ebp
    jne     packet
    mov     %ecx, P_TAIL(%ebx)
    mov     P_BAR0(%ebx), %edi
    mov     %ecx, NIC_RX_TAIL(%edi) # the slots are free again
    mov     P_SEQ(%ebx), %eax
    mov     $0x13, %dx
    out     %eax, %dx               # packets checked
polled:
    ret

bad_seq:
    mov     $4, %al
    jmp     fail
bad_length:
    mov     $5, %al
    jmp     fail
bad_payload:
    mov     $6, %al
fail:
    movzbl  %al, %eax
    shl     $24, %eax
    mov     P_SEQ(%ebx), %edx
    and     $0xffffff, %edx
    or      %edx, %eax
    mov     $0x14, %dx
    out     %eax, %dx               # the error
    hlt
    jmp     fail

# Config dword at address eax (enable | bus | slot | register): eax = its value.
config_read:
    mov     $0xcf8, %dx
    out     %eax, %dx
    mov     $0xcfc, %dx
    in      %dx, %eax
    ret

# Write ecx to the config dword at address eax.
config_write:
    mov     $0xcf8, %dx
    out     %eax, %dx
    mov     $0xcfc, %dx
    mov     %ecx, %eax
    out     %eax, %dx
    ret
