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
#  64 MSI-X vector (0: poll without interrupts)   68 packets per interrupt   72 where its GDT and
#     IDT go (256 bytes each)   76 interrupts taken   80 interrupts seen by the main loop
# It finds the nic (vendor 0x1234, device 0x4e49) by scanning slots 1-31 of bus 0 through
# configuration mechanism #1 (ports 0xcf8/0xcfc), places BAR0 and the 64-bit BAR2, enables
# memory decoding and bus mastering, resets the nic, sets up its receive ring, rings BAR2's
# doorbell and reads the count until it counted, and starts receiving. Then, forever: `44` page writes as
# pages-guest.S makes them (counter and x into a qword of an arena page chosen by x), then a
# poll of the ring: every packet between the tail and the nic's head must carry the next
# sequence number, the packet size and the nic's payload (xorshift32 from seed ^ seq ^
# 0x9e3779b9), after which the tail moves past it.
# With a vector, the nic interrupts through MSI-X: the guest loads a flat GDT and an IDT whose
# gate for the vector counts the interrupt, clears the nic's cause and ends it at the local
# APIC; it enables its local APIC, programs MSI-X table entry 0 (in BAR0) for the vector and
# enables MSI-X in the capability it finds in config space, then halts between polls until an
# interrupt has come (interrupts are enabled only in that HLT).
# Reports on port I/O: 0x11 the generator's seed at the start; 0x10 the writes made every
# mask + 1 writes; 0x13 the packets checked after each poll that found some; 0x14 an error
# (code << 24 | the expected sequence number's low 24 bits), after which it halts. Codes:
# 1 no nic, 2 wrong NIC_ID, 3 doorbell count, 4 sequence number, 5 length, 6 payload, 7 no MSI-X.
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
    .set P_VECTOR, 64
    .set P_BATCH, 68
    .set P_TABLES, 72
    .set P_IRQS, 76
    .set P_SEEN, 80

    .set NIC_ID, 0x00
    .set NIC_CTRL, 0x04
    .set NIC_RX_RING_BASE, 0x10
    .set NIC_RX_RING_SIZE, 0x18
    .set NIC_RX_PKT_SIZE, 0x1c
    .set NIC_RX_HEAD, 0x20
    .set NIC_RX_TAIL, 0x24
    .set NIC_RATE_PPS, 0x28
    .set NIC_SEED, 0x4c
    .set NIC_IRQ_STATUS, 0x0c
    .set NIC_IRQ_BATCH, 0x2c
    .set NIC_MSIX_TABLE, 0x2000
    .set NIC_DOORBELL, 0x4000
    .set APIC_EOI, 0xfee000b0
    .set APIC_SVR, 0xfee000f0

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
    # ... and it counts once. Not at once: the write may go through an ioeventfd, which nothing
    # orders with the next access (a vfio-user server hears it from its event loop), so read the
    # count until it is 1 (a bounded number of times); more than 1 is wrong at once.
    mov     $0x100000, %ecx
1:  mov     NIC_DOORBELL(%edx), %eax
    cmp     $1, %eax
    je      2f
    ja      4f
    pause
    loop    1b
4:  mov     $3, %al
    jmp     fail
2:  cmpl    $0, P_VECTOR(%ebx)
    jne     3f
    movl    $1, NIC_CTRL(%edi)              # receive, polled
    jmp     main
3:  call    interrupts
    mov     P_BAR0(%ebx), %edi
    mov     P_BATCH(%ebx), %eax
    mov     %eax, NIC_IRQ_BATCH(%edi)
    movl    $3, NIC_CTRL(%edi)              # receive, interrupts on

main:
    mov     P_BURST(%ebx), %ecx
writes:
    call    write_page
    dec     %ecx
    jnz     writes
    cmpl    $0, P_VECTOR(%ebx)
    je      4f
    mov     P_IRQS(%ebx), %eax      # interrupts are off but for the HLT below
    cmp     P_SEEN(%ebx), %eax
    jne     woken
    sti                             # the interrupt comes once HLT starts, not before ...
    hlt
    cli
woken:                              # ... and its handler goes on here
    mov     P_IRQS(%ebx), %eax
    mov     %eax, P_SEEN(%ebx)
4:  call    poll
    jmp     main

# Interrupts: GDT, IDT gate for the vector, the local APIC, MSI-X entry 0 and its enable.
interrupts:
    mov     P_TABLES(%ebx), %edi
    movl    $0, 0(%edi)                     # null descriptor
    movl    $0, 4(%edi)
    movl    $0x0000ffff, 8(%edi)            # 0x08: flat 32-bit code
    movl    $0x00cf9a00, 12(%edi)
    movl    $0x0000ffff, 16(%edi)           # 0x10: flat 32-bit data
    movl    $0x00cf9200, 20(%edi)
    movw    $23, 32(%edi)                   # its pseudo-descriptor: limit, base
    mov     %edi, 34(%edi)
    lgdt    32(%edi)
    call    1f                              # where the handler is (the code loads anywhere)
1:  pop     %eax
    add     $(handler - 1b), %eax
    mov     P_VECTOR(%ebx), %ecx
    lea     0x100(%edi,%ecx,8), %edx        # the vector's gate
    mov     %eax, %esi
    and     $0xffff, %esi
    or      $0x00080000, %esi               # selector 0x08, offset 15:0
    mov     %esi, (%edx)
    and     $0xffff0000, %eax
    or      $0x8e00, %eax                   # present, 32-bit interrupt gate, offset 31:16
    mov     %eax, 4(%edx)
    lea     7(,%ecx,8), %eax
    movw    %ax, 40(%edi)                   # the IDT's pseudo-descriptor
    lea     0x100(%edi), %eax
    mov     %eax, 42(%edi)
    lidt    40(%edi)
    movl    $0x1ff, APIC_SVR                # local APIC on, spurious vector 0xff
    mov     P_BAR0(%ebx), %edx
    movl    $0xfee00000, NIC_MSIX_TABLE(%edx)       # entry 0: to APIC 0 ...
    movl    $0, NIC_MSIX_TABLE+4(%edx)
    mov     P_VECTOR(%ebx), %eax
    mov     %eax, NIC_MSIX_TABLE+8(%edx)            # ... this vector ...
    movl    $0, NIC_MSIX_TABLE+12(%edx)             # ... unmasked
    mov     P_CFG(%ebx), %esi
    lea     0x34(%esi), %eax                # capabilities pointer
    call    config_read
    and     $0xfc, %eax
cap:
    test    %eax, %eax
    jz      no_msix
    mov     %eax, %edi
    or      %esi, %eax
    call    config_read
    cmp     $0x11, %al                      # MSI-X
    je      msix
    movzbl  %ah, %eax                       # next
    and     $0xfc, %eax
    jmp     cap
msix:
    or      $0x80000000, %eax               # message control: enable
    mov     %eax, %ecx
    lea     (%esi,%edi), %eax
    call    config_write
    ret
no_msix:
    mov     $7, %al
    jmp     fail

# The nic's interrupt: count it, clear the receive cause, end it at the local APIC. It can only
# come in the HLT of the main loop, so instead of returning (IRET, which kvm_pvm cannot emulate
# in 32-bit protected mode) it drops its frame and goes on after that HLT with interrupts off.
handler:
    add     $12, %esp               # EIP, CS, EFLAGS
    incl    P_IRQS(%ebx)
    mov     P_BAR0(%ebx), %eax
    movl    $1, NIC_IRQ_STATUS(%eax)
    movl    $0, APIC_EOI
    jmp     woken

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
