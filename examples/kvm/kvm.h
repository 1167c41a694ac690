/* SPDX-License-Identifier: MIT */
/*
 * The KVM boilerplate shared by examples/kvm-vmm and examples/kvm-uk: open
 * /dev/kvm (or exit 77, meson's SKIP, with the reason), create VMs, guest
 * RAM and vCPUs, put a vCPU straight into 64-bit long mode, run it, and
 * install a kick signal; and what their checks and command lines share.
 * Header-only: each example stays one cc command.
 *
 * Guest-physical layout both examples use (guest RAM starts at 0):
 *   0x1000   guest code (the examples' byte arrays)
 *   0x2000   PML4 of the boot page tables (kvm_identity_map)
 *   0x3000   PDPT, 0x4000 PD: guest RAM identity mapped with 2 MiB pages
 * Long mode is entered directly through KVM_SET_SREGS (CR0.PE|PG, CR4.PAE,
 * EFER.LME|LMA, a 64-bit code segment): no real-mode trampoline, and no
 * 32-bit or PAE stage, which the paravirtual KVM these were written on
 * refuses (it runs real-mode and long-mode guests only).
 */
#ifndef EXAMPLES_KVM_H
#define EXAMPLES_KVM_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lazymm.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define KVM_CODE_GPA 0x1000u
#define KVM_PML4_GPA 0x2000u
#define KVM_PDPT_GPA 0x3000u
#define KVM_PD_GPA 0x4000u
#define KVM_PTE_P 0x1ull
#define KVM_PTE_W 0x2ull
#define KVM_PTE_PS 0x80ull /* a 2 MiB page in a PD entry */

struct kvm_vcpu {
	int fd;
	struct kvm_run *run; /* mmap of the vCPU fd: exit info, sync_regs, immediate_exit */
	size_t run_size;
};

static inline void kvm_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("kvm: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* No KVM that can run our guests: meson's SKIP (77), with the reason. */
static inline void kvm_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("SKIP: ", stdout);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	exit(77);
}

/* Open file descriptors of the process (a leak check: compare before and after). */
static inline int kvm_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = -1; /* the directory's own fd */
	if (!d)
		kvm_die("opendir /proc/self/fd: %s", strerror(errno));
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2; /* "." and ".." */
}

static inline int kvm_vm_new(int kvm)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		kvm_die("KVM_CREATE_VM: %s", strerror(errno));
	return vm;
}

/* Guest RAM at guest-physical 0 in memslot @slot. MAP_SHARED: the host's writes are the guest's. */
static inline void *kvm_ram_new(int vm, unsigned slot, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		kvm_die("mmap guest RAM: %s", strerror(errno));
	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uintptr_t)p,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
		kvm_die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	return p;
}

static inline uint64_t *kvm_table(void *ram, uint64_t gpa)
{
	return (uint64_t *)((char *)ram + gpa);
}

/* The boot page tables at 0x2000-0x4fff: the first @size bytes of guest RAM at VA == GPA. */
static inline void kvm_identity_map(void *ram, size_t size)
{
	kvm_table(ram, KVM_PML4_GPA)[0] = KVM_PDPT_GPA | KVM_PTE_P | KVM_PTE_W;
	kvm_table(ram, KVM_PDPT_GPA)[0] = KVM_PD_GPA | KVM_PTE_P | KVM_PTE_W;
	for (uint64_t i = 0; i < (size + (2u << 20) - 1) >> 21 && i < 512; i++)
		kvm_table(ram, KVM_PD_GPA)[i] = i << 21 | KVM_PTE_P | KVM_PTE_W | KVM_PTE_PS;
}

/*
 * Put the vCPU in 64-bit long mode at @rip with page tables at @cr3
 * (KVM_SET_SREGS, KVM_SET_REGS), and turn sync_regs on: every exit leaves
 * regs and sregs in run->s.regs, and the host changes them there
 * (kvm_dirty_regs) instead of with those ioctls. run->s.regs is filled
 * here too, so that it is valid before the first KVM_RUN. Returns 0 or -errno.
 */
static inline int kvm_vcpu_long_mode(struct kvm_vcpu *v, uint64_t cr3, uint64_t rip)
{
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_SREGS, &s))
		return -errno;
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 8, .type = 11 /* execute/read, accessed */,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1 /* 64-bit */, .g = 1,
	};
	struct kvm_segment data = code;
	data.selector = 16;
	data.type = 3; /* read/write, accessed */
	data.l = 0;
	data.db = 1;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
	s.cr4 = 0x20;       /* PAE */
	s.efer = 0x500;     /* LMA | LME */
	s.cr3 = cr3;
	struct kvm_regs r = { .rip = rip, .rflags = 2 };
	if (ioctl(v->fd, KVM_SET_SREGS, &s) || ioctl(v->fd, KVM_SET_REGS, &r))
		return -errno;
	v->run->s.regs.sregs = s;
	v->run->s.regs.regs = r;
	v->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
	return 0;
}

/* vCPU @id of @vm with its kvm_run mapped, in long mode (above). Returns 0 or -errno. */
static inline int kvm_vcpu_new(int kvm, int vm, unsigned id, uint64_t cr3, uint64_t rip, struct kvm_vcpu *v)
{
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size <= 0)
		return -errno;
	v->fd = ioctl(vm, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		return -errno;
	v->run_size = (size_t)size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int e = -errno;
		close(v->fd);
		return e;
	}
	int e = kvm_vcpu_long_mode(v, cr3, rip);
	if (e) {
		munmap(v->run, v->run_size);
		close(v->fd);
	}
	return e;
}

static inline void kvm_vcpu_close(struct kvm_vcpu *v)
{
	munmap(v->run, v->run_size);
	close(v->fd);
}

/* Start the next KVM_RUN at @rip, interrupts off (sync_regs: no ioctl). */
static inline void kvm_set_rip(struct kvm_vcpu *v, uint64_t rip)
{
	v->run->s.regs.regs.rip = rip;
	v->run->s.regs.regs.rflags = 2;
	/* A locked RMW: the kick handler may or in KVM_SYNC_X86_SREGS on this thread. */
	__atomic_fetch_or(&v->run->kvm_dirty_regs, KVM_SYNC_X86_REGS, __ATOMIC_RELAXED);
}

/* The 32-bit value of an `out %eax, %dx` exit. */
static inline uint32_t kvm_io_value(const struct kvm_run *run)
{
	uint32_t val = 0;
	memcpy(&val, (const char *)run + run->io.data_offset,
	       run->io.size < sizeof(val) ? run->io.size : sizeof(val));
	return val;
}

/* KVM_RUN once: the exit reason, or -1 for EINTR (a signal: KVM_EXIT_INTR). Dies on other errors. */
static inline int kvm_run_once(struct kvm_vcpu *v)
{
	if (ioctl(v->fd, KVM_RUN, 0) == 0)
		return (int)v->run->exit_reason;
	if (errno == EINTR)
		return -1;
	kvm_die("KVM_RUN: %s", strerror(errno));
	return -1;
}

/*
 * Open /dev/kvm and prove it can run our guests: API 12, KVM_CREATE_VM, and
 * a probe guest in long mode that reports through `out` and halts. Anything
 * else exits 77 (meson SKIP) with the reason. Returns the /dev/kvm fd.
 */
static inline int kvm_open_or_skip(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		kvm_skip("cannot open /dev/kvm: %s", strerror(errno));
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (api < 0)
		kvm_skip("/dev/kvm does not answer KVM_GET_API_VERSION: %s", strerror(errno));
	if (api != KVM_API_VERSION)
		kvm_skip("KVM API version %d, these examples speak %d", api, KVM_API_VERSION);
	if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS) <= 0 ||
	    ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0)
		kvm_skip("KVM lacks KVM_CAP_SYNC_REGS or KVM_CAP_IMMEDIATE_EXIT");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		kvm_skip("KVM_CREATE_VM: %s", strerror(errno));
	size_t size = 2u << 20;
	void *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		kvm_die("mmap: %s", strerror(errno));
	struct kvm_userspace_memory_region r = { .memory_size = size, .userspace_addr = (uintptr_t)ram };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
		kvm_skip("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	static const unsigned char probe[] = {
		0xb8, 0x4b, 0x56, 0x4d, 0x00, /* mov $0x4d564b, %eax ("KVM") */
		0xba, 0x10, 0x00, 0x00, 0x00, /* mov $0x10, %edx */
		0xef,                         /* out %eax, (%dx) */
		0xf4,                         /* hlt */
	};
	memcpy((char *)ram + KVM_CODE_GPA, probe, sizeof(probe));
	kvm_identity_map(ram, size);
	struct kvm_vcpu v;
	int e = kvm_vcpu_new(kvm, vm, 0, KVM_PML4_GPA, KVM_CODE_GPA, &v);
	if (e)
		kvm_skip("cannot create a long-mode vCPU: %s", strerror(-e));
	int exit1 = ioctl(v.fd, KVM_RUN, 0) ? -errno : (int)v.run->exit_reason;
	uint32_t val = exit1 == KVM_EXIT_IO ? kvm_io_value(v.run) : 0;
	int exit2 = ioctl(v.fd, KVM_RUN, 0) ? -errno : (int)v.run->exit_reason;
	if (exit1 != KVM_EXIT_IO || val != 0x4d564b || exit2 != KVM_EXIT_HLT)
		kvm_skip("the long-mode probe guest did not run (exits %d, %d; want %d, %d)", exit1, exit2,
			 KVM_EXIT_IO, KVM_EXIT_HLT);
	kvm_vcpu_close(&v);
	munmap(ram, size);
	close(vm);
	return kvm;
}

/*
 * Install @handler for the VMM's own kick signal @signo, with @lmm_signo
 * (the domain's signal) blocked while it runs, and no SA_RESTART (KVM_RUN
 * is never restarted anyway: it returns EINTR with KVM_EXIT_INTR).
 */
static inline void kvm_kick_install(int signo, void (*handler)(int), int lmm_signo)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, lmm_signo);
	if (sigaction(signo, &sa, NULL))
		kvm_die("sigaction: %s", strerror(errno));
}

/* --- the examples' checks and command lines --- */

/*
 * Relaxed loads and increments, for the counters and the checks' words. A
 * verdict reads them only after pthread_join or lmm_barrier, or where
 * lazymm's own hand-off orders them (free runs after teardown, and after the
 * switch away); each other use says why relaxed is enough where it is.
 */
#define RELAXED_LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define RELAXED_INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)

static atomic_long kvm_violations; /* any makes the exit status 1 (--negative: 0) */

/* Report a violated invariant. Async-signal-safe: signal handlers and switch_ctx report too. */
static inline void kvm_violation(const char *msg)
{
	RELAXED_INC(kvm_violations);
	if (write(2, msg, strlen(msg)) < 0)
		return;
}

#define KVM_CHECK(cond, msg)                               \
	do {                                               \
		if (!(cond))                               \
			kvm_violation("violation: " msg "\n"); \
	} while (0)

static inline unsigned kvm_rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* A command-line count in 1..100000, or exit 2. */
static inline unsigned kvm_arg_uint(const char *s, const char *name)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > 100000) {
		fprintf(stderr, "bad %s: %s\n", name, s);
		exit(2);
	}
	return (unsigned)v;
}

/* A scheme built into this lazymm, or exit 2. */
static inline enum lmm_scheme kvm_arg_scheme(const char *s)
{
	enum lmm_scheme scheme;
	if (lmm_scheme_parse(s, &scheme) || !lmm_scheme_available(scheme)) {
		fprintf(stderr, "scheme %s is not built in\n", s);
		exit(2);
	}
	return scheme;
}

#endif /* EXAMPLES_KVM_H */
