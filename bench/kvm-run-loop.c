/* The baseline of the KVM run-loop benchmark: the same guest (exits-guest, one port write per
 * loop) driven by a plain C KVM_RUN loop on one thread, each port I/O exit handled in place.
 * Usage: kvm-run-loop GUEST.bin EXITS TRIALS; prints one line per trial: nanoseconds for EXITS
 * exits. Compiled by kvm.bench.ts with gcc. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM (1 << 20)
#define ENTRY 0x1000

static void die(const char *what) { perror(what); exit(1); }

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s GUEST.bin EXITS TRIALS\n", argv[0]); return 2; }
  long exits = atol(argv[2]), trials = atol(argv[3]);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  unsigned char *mem = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  FILE *f = fopen(argv[1], "rb");
  if (!f) die(argv[1]);
  size_t n = fread(mem + ENTRY, 1, 4096, f);
  fclose(f);
  if (n == 0) die("empty guest");
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = RAM, .userspace_addr = (unsigned long)mem };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 e[256]; } cpuid = { .h.nent = 256 };
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) die("KVM_SET_CPUID2");
  for (long t = 0; t < trials; t++) {
    struct kvm_sregs s;
    if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
    struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .db = 1, .s = 1, .g = 1 };
    struct kvm_segment data = code;
    data.type = 3; data.selector = 16;
    s.cs = code; s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr0 = (s.cr0 | 1) & ~(1UL << 31);
    if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
    struct kvm_regs r = { .rip = ENTRY, .rflags = 2, .rcx = exits };
    if (ioctl(vcpu, KVM_SET_REGS, &r) < 0) die("KVM_SET_REGS");
    long seen = 0;
    unsigned sum = 0;
    long long t0 = now_ns();
    for (;;) {
      if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
      if (run->exit_reason == KVM_EXIT_IO) {
        /* Handle it as the VMM does: read the value the guest wrote. */
        unsigned v;
        memcpy(&v, (unsigned char *)run + run->io.data_offset, 4);
        sum += v;
        if (run->io.port == 0x12) break;
        seen++;
      } else if (run->exit_reason == KVM_EXIT_HLT) {
        break;
      } else {
        fprintf(stderr, "exit %u\n", run->exit_reason);
        return 1;
      }
    }
    long long t1 = now_ns();
    if (seen != exits) { fprintf(stderr, "%ld exits, expected %ld (%u)\n", seen, exits, sum); return 1; }
    printf("%lld\n", t1 - t0);
  }
  return 0;
}
