/* SPDX-License-Identifier: MIT */
/*
 * A userspace kernel on lazymm and one KVM VM (the shape of gVisor's KVM
 * platform): one VM, one vCPU per worker thread; contexts are guest address
 * spaces, and installing one is loading its CR3.
 *
 * Guest RAM (8 MiB, guest-physical 0):
 *   0x1000            kernel code: the kernel task and the user task below
 *   0x2000-0x4fff     init's page tables: PML4 whose entry 0 maps guest RAM
 *                     at VA == GPA (examples/kvm/kvm.h); this is the kernel
 *                     half, shared by every address space (the same PML4
 *                     entry 0 in all of them), so kernel code runs at its
 *                     physical address under any CR3
 *   0x200000-0x3fffff a pool of page-table pages
 *   0x400000-0x7fffff a pool of user frames
 * An address space takes a PML4, PDPT, PD and PT from the pool and one user
 * frame, mapped at USER_VA (PML4 entry 256: the user half; the split is
 * upside down from Linux's only so that the kernel half can be an identity
 * map). The frame holds the space's tag.
 *
 * Tasks on each worker, in bursts over a few address spaces:
 *   - user task of space S: lmm_switch(w, S) (switch_ctx writes S's CR3 into
 *     the vCPU's kvm_run sync_regs: no ioctl), then guest code reads USER_VA
 *     through S's page tables and reports the value with `out`, then hlt;
 *   - kernel task, context-less: lmm_switch(w, NULL) keeps S loaded lazily,
 *     and guest code in the kernel half reloads CR3 (mov %cr3, %rax; mov
 *     %rax, %cr3), reports it with `out` and halts: the vCPU's page walker
 *     really walks the lazily held space's PML4 to fetch its next
 *     instruction. With --eager the worker switches to init instead
 *     (lmm_unlazy) before every kernel task: what lazymm saves.
 * A space exits after a few bursts: the last lmm_put runs teardown (clears
 * the user half), usually on a worker that still has its CR3 loaded, which
 * then runs a kernel task under it. The process table holds a count
 * reference until the space is reaped one generation later (a zombie), so
 * the lazy holds outlive teardown under every scheme. free poisons the four
 * page-table pages (present entries with reserved bits set: any walk through
 * them faults, and with no IDT that is a triple fault, KVM_EXIT_SHUTDOWN)
 * and returns them and the frame to the pools.
 *
 * The shadow MMU. This paravirtual KVM shadows the guest's page tables: a
 * write by the host (not by the guest) to a page table is seen by the vCPU
 * after a CR3 reload or invlpg, not necessarily before. The rules here:
 *   - a space's tables are written before any CR3 names them, and switch_ctx
 *     always loads the new CR3 (sync_regs writes CR3 whenever it is dirty),
 *     so a user task walks exactly what the host built;
 *   - tables of a live space are never written again (teardown runs only
 *     once users reached 0: no user task of it runs after);
 *   - the kernel task reloads CR3 itself before anything else, so it walks
 *     what is in the lazily held space's tables now (the cleared user half,
 *     or, with --negative, the poison), not what the shadow cached;
 *   - free poisons pages no vCPU has loaded (the free hook checks it), and
 *     every later use of them comes through a fresh CR3 load.
 * (Measured here, host writes were in fact seen even without a reload; the
 * rules above do not rely on that.)
 *
 * Checked (any violation makes the exit status 1):
 *   - every user task reads its own frame's tag;
 *   - every CR3 a kernel task reports is init's or that of the space the
 *     worker held when the task began, and that space is not released;
 *   - the free hook's scan of every vCPU's loaded CR3 finds nothing;
 *   - no KVM_EXIT_SHUTDOWN (a walk through a poisoned table);
 *   - teardown and free once each per space, every space freed, no fd leaked.
 * --negative poisons and returns a space's pages at teardown instead of
 * free; the program then exits 0 only if that was caught.
 *
 * Guest state from a lazily held space. lazymm's signal (shootdown's) can
 * move a lazy vCPU to init's CR3 between two guest instructions: KVM_RUN
 * returns EINTR, the handler's switch_ctx loads init, and the space may be
 * freed, its tables poisoned, as soon as the handler returns. A guest
 * register computed from the old CR3 (the kernel task's rax, between its
 * read and its reload) then names freed tables. So an interrupted task whose
 * vCPU changed CR3 meanwhile starts again from its entry (guest_run), as a
 * kernel restarts an interrupted operation instead of resuming it with a
 * stale pointer. --race widens that window (a spin between the read and the
 * reload) and frees spaces while other vCPUs hold them lazily, so shootdown's
 * signal lands inside it; without the restart it ends in KVM_EXIT_SHUTDOWN.
 * --bench runs eager against lazy under every scheme and reports
 * switches/s, CR3 loads avoided and the scheme's cost as a fraction of a
 * CR3 load (docs/kvm.md).
 *
 * Without /dev/kvm (or with a KVM that cannot run a long-mode guest) it
 * exits 77, meson's SKIP, with the reason.
 *
 *   cc -O2 -I../kvm kvm-uk.c $(pkg-config --cflags --libs lazymm) -o kvm-uk
 *   ./kvm-uk --scheme hazard [--workers 2] [--spaces 4] [--ms 1000] [--eager] [--negative] [--race]
 *   ./kvm-uk --bench [--spaces 4] [--ms 500]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kvm.h"
#include <lazymm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#define RAM_SIZE (8u << 20)
#define PT_POOL_GPA 0x200000u
#define FRAME_POOL_GPA 0x400000u
#define POOL_PAGES 512u /* each pool */
#define PAGE 4096u
#define USER_VA 0xffff800000000000ull
#define USER_PML4_FIRST 256 /* the user half: PML4 entries 256..511 */
#define POISON 0xdeaddeaddeaddeadull /* present, reserved bits 51:40 set */
#define PORT_USER 0x10
#define PORT_KERNEL 0x11
#define KERNEL_ENTRY (KVM_CODE_GPA + 0x00)
#define USER_ENTRY (KVM_CODE_GPA + 0x10)
#define HLT_ONLY (KVM_CODE_GPA + 0x0c)
#define KERNEL_RACE_ENTRY (KVM_CODE_GPA + 0x20)
#define BURST 4 /* user tasks of one space in a row, each followed by a kernel task */

/* The guest, at 0x1000 (assembled with gcc -c, `objdump -d`). */
static const unsigned char guest_code[] = {
	/* 0x00 kernel task */
	0x0f, 0x20, 0xd8,             /* mov %cr3, %rax                              */
	0x0f, 0x22, 0xd8,             /* mov %rax, %cr3      reload: walk it afresh  */
	0xba, 0x11, 0x00, 0x00, 0x00, /* mov $0x11, %edx                             */
	0xef,                         /* out %eax, (%dx)     report the CR3          */
	0xf4,                         /* hlt  (0x0c, also the bench's hlt-only task) */
	0x00, 0x00, 0x00,             /* padding                                     */
	/* 0x10 user task */
	0xa1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xff, 0xff, /* movabs USER_VA, %eax */
	0xba, 0x10, 0x00, 0x00, 0x00, /* mov $0x10, %edx                             */
	0xef,                         /* out %eax, (%dx)     report the frame's tag  */
	0xf4,                         /* hlt                                         */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* padding */
	/* 0x20 kernel task, --race: the same with a spin between the CR3 read and the reload */
	0x0f, 0x20, 0xd8,             /* mov %cr3, %rax                              */
	0xb9, 0x00, 0x10, 0x00, 0x00, /* mov $0x1000, %ecx                           */
	0xe2, 0xfe,                   /* loop .              (a lazymm signal lands) */
	0x0f, 0x22, 0xd8,             /* mov %rax, %cr3                              */
	0xba, 0x11, 0x00, 0x00, 0x00, /* mov $0x11, %edx                             */
	0xef,                         /* out %eax, (%dx)                             */
	0xf4,                         /* hlt                                         */
};

enum space_state { SP_LIVE, SP_TORN, SP_RELEASED };

struct space {
	struct lmm_ctx ctx; /* first: a struct lmm_ctx * is a struct space * */
	uint32_t tag;
	uint64_t pml4, pdpt, pd, pt, frame; /* guest-physical */
	atomic_int state;                   /* enum space_state; relaxed: a check's word */
	atomic_int teardowns, frees;
	atomic_int bursts_left;             /* it exits when they run out; relaxed: the slot's lock orders the exit */
	struct space *next_all;             /* every space, for the final checks */
};

struct slot { /* the process table */
	pthread_mutex_t lock;
	struct space *sp;     /* users + count reference */
	struct space *zombie; /* exited, not yet reaped: count reference */
};

struct cpu {
	struct lmm_worker *w;
	pthread_t thread;
	unsigned id;
	struct kvm_vcpu vcpu;
	/* Written by switch_ctx (maybe in lazymm's signal handler); read by free's scan. */
	_Atomic uint64_t loaded_cr3;
	_Atomic(struct space *) installed; /* NULL: init */
	atomic_long cr3_loads;
	long user_tasks, kernel_tasks, intr_exits;
	atomic_long restarts; /* relaxed: a counter, read by the main thread while --race waits */
	unsigned seed;
};

static struct {
	int kvm, vm;
	unsigned char *ram;
	struct cpu *cpus;
	unsigned nworkers, nspaces;
	bool eager, negative, bench, race;
	struct lmm_domain *d;
	struct slot *slots;
	atomic_bool stop; /* relaxed: only ends the loops; the results come after pthread_join */
	pthread_mutex_t pool_lock; /* guards the pools and the list of spaces */
	uint64_t pt_free[POOL_PAGES], frame_free[POOL_PAGES];
	unsigned npt_free, nframe_free;
	struct space *spaces;
	uint32_t next_tag;
	atomic_long shutdowns, spaces_made, spaces_freed;
	atomic_long planted; /* violations of the kind --negative plants: a released space still loaded */
} g;

/* A violation that a release while loaded causes (--negative expects these, and only these). */
static void planted(const char *msg)
{
	RELAXED_INC(g.planted);
	kvm_violation(msg);
}

static struct space *space_of(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(g.d) ? NULL : (struct space *)c;
}

static uint64_t *page(uint64_t gpa)
{
	return kvm_table(g.ram, gpa);
}

/* --- the pools --- */

static void pools_init(void)
{
	g.npt_free = g.nframe_free = POOL_PAGES;
	for (unsigned i = 0; i < POOL_PAGES; i++) {
		g.pt_free[i] = PT_POOL_GPA + (uint64_t)i * PAGE;
		g.frame_free[i] = FRAME_POOL_GPA + (uint64_t)i * PAGE;
	}
}

static uint64_t pool_take(uint64_t *pool, unsigned *n)
{
	if (!*n)
		kvm_die("a guest page pool ran dry");
	return pool[--*n];
}

static struct space *space_new(unsigned bursts)
{
	struct space *sp = calloc(1, sizeof(*sp));
	if (!sp)
		kvm_die("out of memory");
	pthread_mutex_lock(&g.pool_lock);
	/*
	 * The pages come back only when spaces are freed, which rcu does a
	 * grace period later (and shootdown after its holders leave): when
	 * the pools run low, wait for the frees already due, as a kernel
	 * waits for reclaim, rather than fail. Never inside a hook.
	 */
	for (int tries = 0; (g.npt_free < 4 || g.nframe_free < 1) && tries < 100; tries++) {
		pthread_mutex_unlock(&g.pool_lock);
		int ret = lmm_barrier(g.d);
		if (ret && ret != -ETIMEDOUT)
			kvm_die("lmm_barrier failed");
		pthread_mutex_lock(&g.pool_lock);
	}
	sp->pml4 = pool_take(g.pt_free, &g.npt_free);
	sp->pdpt = pool_take(g.pt_free, &g.npt_free);
	sp->pd = pool_take(g.pt_free, &g.npt_free);
	sp->pt = pool_take(g.pt_free, &g.npt_free);
	sp->frame = pool_take(g.frame_free, &g.nframe_free);
	sp->tag = ++g.next_tag;
	sp->next_all = g.spaces;
	g.spaces = sp;
	pthread_mutex_unlock(&g.pool_lock);
	/* Built before any CR3 names it: the first load shows the vCPU exactly this. */
	memset(page(sp->pml4), 0, PAGE);
	memset(page(sp->pdpt), 0, PAGE);
	memset(page(sp->pd), 0, PAGE);
	memset(page(sp->pt), 0, PAGE);
	memset(page(sp->frame), 0, PAGE);
	page(sp->pml4)[0] = page(KVM_PML4_GPA)[0]; /* the shared kernel half */
	page(sp->pml4)[USER_PML4_FIRST] = sp->pdpt | KVM_PTE_P | KVM_PTE_W;
	page(sp->pdpt)[0] = sp->pd | KVM_PTE_P | KVM_PTE_W;
	page(sp->pd)[0] = sp->pt | KVM_PTE_P | KVM_PTE_W;
	page(sp->pt)[0] = sp->frame | KVM_PTE_P | KVM_PTE_W;
	memcpy(page(sp->frame), &sp->tag, sizeof(sp->tag));
	atomic_init(&sp->bursts_left, (int)bursts);
	if (lmm_ctx_init(g.d, &sp->ctx))
		kvm_die("lmm_ctx_init failed");
	RELAXED_INC(g.spaces_made);
	return sp;
}

/* Poison the page tables and hand everything back: free's work (--negative: teardown's). */
static void space_release(struct space *sp)
{
	atomic_store_explicit(&sp->state, SP_RELEASED, memory_order_relaxed);
	uint64_t pts[] = { sp->pml4, sp->pdpt, sp->pd, sp->pt };
	pthread_mutex_lock(&g.pool_lock);
	for (unsigned i = 0; i < 4; i++) {
		for (unsigned j = 0; j < PAGE / 8; j++)
			page(pts[i])[j] = POISON;
		g.pt_free[g.npt_free++] = pts[i];
	}
	g.frame_free[g.nframe_free++] = sp->frame;
	pthread_mutex_unlock(&g.pool_lock);
}

/* --- the hooks --- */

/* Load next's CR3 on this worker's vCPU through sync_regs. Async-signal-safe. */
static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	struct cpu *c = lmm_worker_data(w);
	struct space *p = space_of(prev), *n = space_of(next);
	uint64_t cr3 = n ? n->pml4 : KVM_PML4_GPA;

	/* Relaxed: written only here, on this thread. */
	KVM_CHECK(RELAXED_LOAD(c->installed) == p,
	      "switch_ctx's prev is not what the vCPU has loaded");
	/*
	 * Applied by the next KVM_RUN: this runs between two KVM_RUNs of this
	 * thread (a signal handler runs only once KVM_RUN has returned EINTR),
	 * and the one CR3 a vCPU ever runs with is what was written here last.
	 */
	c->vcpu.run->s.regs.sregs.cr3 = cr3;
	/* A locked RMW: kvm_set_rip ors in KVM_SYNC_X86_REGS on this thread. */
	__atomic_fetch_or(&c->vcpu.run->kvm_dirty_regs, KVM_SYNC_X86_SREGS, __ATOMIC_RELAXED);
	/* Relaxed: free's scan is ordered after this by lazymm (active is published after us). */
	atomic_store_explicit(&c->loaded_cr3, cr3, memory_order_relaxed);
	atomic_store_explicit(&c->installed, n, memory_order_relaxed); /* relaxed: as above */
	/*
	 * From lazymm's handler: make the vCPU's next KVM_RUN return EINTR at
	 * once, so that guest_run sees the switch even when the handler ran
	 * after KVM_RUN returned for another reason (then KVM finds no signal
	 * pending and would resume the task with its stale registers).
	 */
	if (flags & LMM_SWITCH_SIGNAL)
		/* Relaxed: only this thread and its own handler touch it (guest_run's fence orders the rest). */
		__atomic_store_n(&c->vcpu.run->immediate_exit, 1, __ATOMIC_RELAXED);
	RELAXED_INC(c->cr3_loads); /* a counter */
}

/* exit_mmap: clear the user half. A vCPU may still have the CR3 loaded: it runs only kernel tasks. */
static void teardown(struct lmm_ctx *ctx)
{
	struct space *sp = space_of(ctx);
	KVM_CHECK(RELAXED_INC(sp->teardowns) == 0, "teardown ran twice");
	atomic_store_explicit(&sp->state, SP_TORN, memory_order_relaxed);
	for (unsigned i = USER_PML4_FIRST; i < 512; i++)
		page(sp->pml4)[i] = 0;
	if (g.negative)
		space_release(sp); /* the bug --negative plants: poisoned while still loaded */
}

/* No vCPU has the CR3 loaded: poison the tables, return the pages. */
static void free_space(struct lmm_ctx *ctx)
{
	struct space *sp = space_of(ctx);
	KVM_CHECK(RELAXED_LOAD(sp->teardowns) == 1, "free before teardown");
	KVM_CHECK(RELAXED_INC(sp->frees) == 0, "free ran twice");
	for (unsigned i = 0; i < g.nworkers; i++)
		/* Relaxed: lazymm orders this after the worker's switch_ctx away from it. */
		if (RELAXED_LOAD(g.cpus[i].loaded_cr3) == sp->pml4)
			planted("violation: the free hook found the space's CR3 loaded on a vCPU\n");
	if (!g.negative)
		space_release(sp);
	RELAXED_INC(g.spaces_freed);
}

/* --- tasks --- */

/* KVM_RUN from @rip until hlt; returns the value of the `out` to @port (0 if none came). */
static uint32_t guest_run(struct cpu *c, uint64_t rip, unsigned port, bool *reported)
{
	uint32_t val = 0;
	*reported = false;
	kvm_set_rip(&c->vcpu, rip);
	/* Relaxed: written by switch_ctx on this thread (maybe in its signal handler). */
	uint64_t cr3 = RELAXED_LOAD(c->loaded_cr3);
	for (;;) {
		int exit = kvm_run_once(&c->vcpu);
		if (exit < 0) { /* lazymm's signal (shootdown, rcu): it may have loaded init's CR3 */
			c->intr_exits++;
			/* Set by switch_ctx in the handler; cleared before the look below, so none is missed. */
			__atomic_store_n(&c->vcpu.run->immediate_exit, 0, __ATOMIC_RELAXED);
			/*
			 * Pairs with switch_ctx in the handler on this thread: the clear
			 * before the loaded_cr3 look. A handler that lands after the
			 * clear sets it again, or changed loaded_cr3 before the look.
			 */
			atomic_signal_fence(memory_order_seq_cst);
			/*
			 * If it did, the guest may hold the old CR3 in a register
			 * (the kernel task's rax between its read and its reload),
			 * and the old tables may be poisoned the moment the handler
			 * returned: nothing guest state computed from a lazily held
			 * context survives the switch away from it. Start the task
			 * again from its entry, under the CR3 loaded now (the task has
			 * no effect before its report).
			 */
			if (!*reported && RELAXED_LOAD(c->loaded_cr3) != cr3) {
				cr3 = RELAXED_LOAD(c->loaded_cr3);
				kvm_set_rip(&c->vcpu, rip);
				RELAXED_INC(c->restarts);
			}
			continue;
		}
		if (exit == KVM_EXIT_IO && c->vcpu.run->io.port == port && !*reported) {
			val = kvm_io_value(c->vcpu.run);
			*reported = true;
			continue;
		}
		if (exit == KVM_EXIT_HLT)
			return val;
		if (exit == KVM_EXIT_SHUTDOWN) {
			RELAXED_INC(g.shutdowns);
			planted("violation: KVM_EXIT_SHUTDOWN: the vCPU walked a poisoned page table\n");
		} else {
			kvm_violation("violation: an unexpected exit\n");
			fprintf(stderr, "  worker %u: exit reason %d\n", c->id, exit);
		}
		/* Reset, on the CR3 lazymm has installed here (relaxed: this thread's word). */
		if (kvm_vcpu_long_mode(&c->vcpu, RELAXED_LOAD(c->loaded_cr3), rip))
			kvm_die("cannot reset vCPU %u", c->id);
		*reported = false;
		return 0;
	}
}

static void user_task(struct cpu *c, struct space *sp)
{
	bool reported;
	uint32_t tag = guest_run(c, USER_ENTRY, PORT_USER, &reported);
	KVM_CHECK(reported && tag == sp->tag, "a user task did not read its own frame");
	c->user_tasks++;
}

/* Context-less: guest code in the kernel half, under whatever CR3 the vCPU has loaded. */
static void kernel_task(struct cpu *c)
{
	/* Relaxed: written by switch_ctx on this thread. */
	struct space *held = RELAXED_LOAD(c->installed);
	uint64_t held_cr3 = RELAXED_LOAD(c->loaded_cr3);
	bool reported;
	uint32_t cr3 = guest_run(c, g.race ? KERNEL_RACE_ENTRY : KERNEL_ENTRY, PORT_KERNEL, &reported);
	c->kernel_tasks++;
	if (!reported)
		return; /* a shutdown, reported already */
	/* lazymm's signal may have moved the worker to init meanwhile, never anywhere else. */
	KVM_CHECK(cr3 == held_cr3 || cr3 == KVM_PML4_GPA, "a kernel task ran under a CR3 nobody loaded");
	/* Still held (relaxed: our own thread's word): then it cannot have been freed. */
	if (held && cr3 == held_cr3 && RELAXED_LOAD(c->installed) == held &&
	    RELAXED_LOAD(held->state) == SP_RELEASED)
		planted("violation: a kernel task ran under the CR3 of a released space\n");
}

/* A users reference on slot i's space. */
static struct space *slot_get(struct slot *s)
{
	pthread_mutex_lock(&s->lock);
	struct space *sp = s->sp;
	lmm_get(&sp->ctx);
	pthread_mutex_unlock(&s->lock);
	return sp;
}

/* sp exits: a new space takes the slot; sp stays a zombie (count reference) until the next exit. */
static void slot_exit(struct slot *s, struct space *sp, unsigned *seed)
{
	struct space *fresh = space_new(2 + kvm_rnd(seed) % 4);
	lmm_grab(&fresh->ctx); /* the zombie's count reference, for later */
	pthread_mutex_lock(&s->lock);
	struct space *reaped = s->zombie;
	s->zombie = g.race ? NULL : sp;
	s->sp = fresh;
	pthread_mutex_unlock(&s->lock);
	lmm_put(&sp->ctx); /* the table's users reference; the caller still holds one */
	if (reaped)
		lmm_drop(&reaped->ctx); /* wait(): the zombie's struct may go once no vCPU has it loaded */
	if (g.race)
		lmm_drop(&sp->ctx); /* reaped at once: the caller's lmm_put frees it, often while another vCPU holds it lazily */
}

static void *worker_main(void *arg)
{
	struct cpu *c = arg;
	if (lmm_worker_online(g.d, c, &c->w))
		kvm_die("lmm_worker_online failed");
	while (!RELAXED_LOAD(g.stop)) {
		struct slot *s = &g.slots[kvm_rnd(&c->seed) % g.nspaces];
		struct space *sp = slot_get(s);
		for (unsigned b = 0; b < BURST; b++) {
			lmm_switch(c->w, &sp->ctx);
			user_task(c, sp);
			lmm_switch(c->w, NULL); /* sp stays loaded lazily ... */
			if (g.eager)
				lmm_unlazy(c->w); /* ... unless eager: init's CR3 for every kernel task */
			kernel_task(c);
		}
		if (atomic_fetch_sub_explicit(&sp->bursts_left, 1, memory_order_relaxed) == 1)
			slot_exit(s, sp, &c->seed);
		lmm_put(&sp->ctx);
		kernel_task(c); /* if that was the last user: runs under its CR3, just torn down */
	}
	lmm_worker_offline(c->w);
	return NULL;
}

/* --- one run --- */

#define RACE_CAP_MS 20000

static long restarts_so_far(void)
{
	long n = 0;
	for (unsigned i = 0; i < g.nworkers; i++)
		n += RELAXED_LOAD(g.cpus[i].restarts);
	return n;
}

struct result {
	double secs;
	struct lmm_stats st;
	long user_tasks, kernel_tasks, cr3_loads, intr_exits, restarts;
	double roundtrip_ns; /* a lazy round trip: lmm_switch(w, sp) on the lazy hit, then lmm_switch(w, NULL) */
};

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/*
 * A lazy round trip on the calling worker (the bench's scheme cost), no KVM
 * in the loop: the median of 9 rounds of 20000, as a shared host preempts.
 */
static double roundtrip_ns(struct cpu *c)
{
	enum { ROUNDS = 9, N = 20000 };
	double t[ROUNDS];
	struct space *sp = slot_get(&g.slots[0]);
	lmm_switch(c->w, &sp->ctx);
	lmm_switch(c->w, NULL);
	for (int r = 0; r < ROUNDS; r++) {
		double t0 = now_ns();
		for (int i = 0; i < N; i++) {
			lmm_switch(c->w, &sp->ctx);
			lmm_switch(c->w, NULL);
		}
		t[r] = (now_ns() - t0) / N;
	}
	lmm_put(&sp->ctx);
	qsort(t, ROUNDS, sizeof(t[0]), cmp_double);
	return t[ROUNDS / 2];
}

static void run(enum lmm_scheme scheme, unsigned ms, bool measure_roundtrip, struct result *r)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_space };
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops, .flags = g.bench ? 0 : LMM_F_DEBUG };
	int ret = lmm_domain_create(&cfg, &g.d);
	if (ret)
		kvm_die("lmm_domain_create: %s", strerror(-ret));
	atomic_store_explicit(&g.stop, false, memory_order_relaxed);
	pools_init();
	g.slots = calloc(g.nspaces, sizeof(*g.slots));
	if (!g.slots)
		kvm_die("out of memory");
	unsigned seed = 1;
	for (unsigned i = 0; i < g.nspaces; i++) {
		pthread_mutex_init(&g.slots[i].lock, NULL);
		g.slots[i].sp = space_new(2 + kvm_rnd(&seed) % 4);
		lmm_grab(&g.slots[i].sp->ctx); /* its zombie reference */
	}
	memset(r, 0, sizeof(*r));
	for (unsigned i = 0; i < g.nworkers; i++) {
		struct cpu *c = &g.cpus[i];
		c->user_tasks = c->kernel_tasks = c->intr_exits = 0;
		atomic_store_explicit(&c->restarts, 0, memory_order_relaxed);
		atomic_store_explicit(&c->cr3_loads, 0, memory_order_relaxed);
		atomic_store_explicit(&c->loaded_cr3, KVM_PML4_GPA, memory_order_relaxed);
		atomic_store_explicit(&c->installed, NULL, memory_order_relaxed);
		c->seed = 11 + i;
		/* Every run starts on init's CR3 (a KVM_SET_SREGS: the run's one ioctl load). */
		if (kvm_vcpu_long_mode(&c->vcpu, KVM_PML4_GPA, HLT_ONLY))
			kvm_die("cannot reset vCPU %u", i);
	}
	if (measure_roundtrip) {
		struct lmm_worker *w;
		if (lmm_worker_online(g.d, &g.cpus[0], &w))
			kvm_die("lmm_worker_online failed");
		g.cpus[0].w = w;
		r->roundtrip_ns = roundtrip_ns(&g.cpus[0]);
		lmm_worker_offline(w);
		atomic_store_explicit(&g.cpus[0].cr3_loads, 0, memory_order_relaxed);
	}
	lmm_stats(g.d, &r->st);
	uint64_t switches0 = r->st.switches, installs0 = r->st.installs, hits0 = r->st.lazy_hits;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < g.nworkers; i++)
		if (pthread_create(&g.cpus[i].thread, NULL, worker_main, &g.cpus[i]))
			kvm_die("pthread_create failed");
	nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L }, NULL);
	/* --race under shootdown: on until a restart was seen (RACE_CAP_MS at most), so the test tests it. */
	for (unsigned waited = ms; g.race && scheme == LMM_SCHEME_SHOOTDOWN && !restarts_so_far() &&
				   waited < RACE_CAP_MS; waited += 100)
		nanosleep(&(struct timespec){ 0, 100000000L }, NULL);
	atomic_store_explicit(&g.stop, true, memory_order_relaxed);
	for (unsigned i = 0; i < g.nworkers; i++) {
		pthread_join(g.cpus[i].thread, NULL);
		r->user_tasks += g.cpus[i].user_tasks;
		r->kernel_tasks += g.cpus[i].kernel_tasks;
		r->cr3_loads += RELAXED_LOAD(g.cpus[i].cr3_loads);
		r->intr_exits += g.cpus[i].intr_exits;
		r->restarts += RELAXED_LOAD(g.cpus[i].restarts);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r->secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	lmm_stats(g.d, &r->st);
	r->st.switches -= switches0;
	r->st.installs -= installs0;
	r->st.lazy_hits -= hits0;
	for (unsigned i = 0; i < g.nspaces; i++) { /* shutdown: every process exits and is reaped */
		lmm_put(&g.slots[i].sp->ctx);
		lmm_drop(&g.slots[i].sp->ctx);
		if (g.slots[i].zombie)
			lmm_drop(&g.slots[i].zombie->ctx);
		pthread_mutex_destroy(&g.slots[i].lock);
	}
	free(g.slots);
	ret = lmm_barrier(g.d);
	KVM_CHECK(ret == 0, "lmm_barrier failed");
	KVM_CHECK(RELAXED_LOAD(g.spaces_freed) == RELAXED_LOAD(g.spaces_made), "not every space was freed");
	for (struct space *sp = g.spaces, *next; sp; sp = next) {
		next = sp->next_all;
		KVM_CHECK(RELAXED_LOAD(sp->teardowns) == 1 && RELAXED_LOAD(sp->frees) == 1,
		      "a space was not torn down and freed exactly once");
		free(sp);
	}
	g.spaces = NULL;
	KVM_CHECK(g.npt_free == POOL_PAGES && g.nframe_free == POOL_PAGES, "guest pages leaked");
	ret = lmm_domain_destroy(g.d);
	KVM_CHECK(ret == 0, "lmm_domain_destroy failed");
}

/* --- the bench --- */

/* One KVM_RUN of the lone hlt, in ns; with @cr3 nonzero, that CR3 written into sync_regs first. */
static double hlt_ns(struct kvm_vcpu *v, uint64_t cr3)
{
	double t0 = now_ns();
	if (cr3) {
		v->run->s.regs.sregs.cr3 = cr3;
		v->run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
	}
	kvm_set_rip(v, HLT_ONLY);
	if (kvm_run_once(v) != KVM_EXIT_HLT)
		kvm_die("the bench's hlt did not exit with KVM_EXIT_HLT");
	return now_ns() - t0;
}

/*
 * What a CR3 load costs through sync_regs: the median, over pairs of
 * KVM_RUNs of a lone hlt taken back to back, of the one with a new CR3 (init's
 * and another PML4 in turn) minus the one without. Pairs, not two long
 * loops: a KVM_RUN takes 10-20 us on this shared host and drifts by more
 * than the load costs.
 */
static double cr3_load_ns(void)
{
	enum { N = 2001 };
	struct kvm_vcpu *v = &g.cpus[0].vcpu;
	static double d[N];
	pools_init();
	uint64_t other = pool_take(g.pt_free, &g.npt_free); /* a PML4 with the kernel half only */
	memset(page(other), 0, PAGE);
	page(other)[0] = page(KVM_PML4_GPA)[0];
	for (int i = 0; i < N; i++) {
		double plain = hlt_ns(v, 0);
		d[i] = hlt_ns(v, i % 2 ? other : KVM_PML4_GPA) - plain;
	}
	qsort(d, N, sizeof(d[0]), cmp_double);
	return d[N / 2];
}

static void bench(unsigned ms)
{
	double cr3 = cr3_load_ns();
	printf("kvm-uk bench: %u workers (one vCPU each), %u address spaces, %u ms per row\n", g.nworkers,
	       g.nspaces, ms);
	printf("a CR3 load through sync_regs costs %.0f ns (median of KVM_RUN pairs of a lone hlt, with and without)\n\n",
	       cr3);
	printf("| mode | scheme | tasks/s | switches/s | CR3 loads/s | CR3 loads per user task | loads avoided | "
	       "CR3 time avoided per user task | lazy round trip | as a fraction of a CR3 load |\n");
	printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
	for (enum lmm_scheme s = LMM_SCHEME_REFCOUNT; s <= LMM_SCHEME_RCU; s++) {
		if (!lmm_scheme_available(s))
			continue;
		struct result r[2];
		for (int lazy = 0; lazy < 2; lazy++) {
			g.eager = !lazy;
			run(s, ms, lazy, &r[lazy]);
		}
		for (int lazy = 0; lazy < 2; lazy++) {
			double tasks = (double)(r[lazy].user_tasks + r[lazy].kernel_tasks);
			double per_user = (double)r[lazy].cr3_loads / (double)r[lazy].user_tasks;
			double eager_per_user = (double)r[0].cr3_loads / (double)r[0].user_tasks;
			printf("| %s | %s | %.0f | %.0f | %.0f | %.2f | ", lazy ? "lazy" : "eager", lmm_scheme_name(s),
			       tasks / r[lazy].secs, (double)r[lazy].st.switches / r[lazy].secs,
			       (double)r[lazy].cr3_loads / r[lazy].secs, per_user);
			if (lazy)
				printf("%.0f%% | %.0f ns | %.1f ns | %.3f |\n", 100 * (1 - per_user / eager_per_user),
				       (eager_per_user - per_user) * cr3, r[1].roundtrip_ns, r[1].roundtrip_ns / cr3);
			else
				printf("- | - | - | - |\n");
		}
	}
	printf("\nloads avoided: CR3 loads per user task, lazy against eager under the same scheme.\n");
}

int main(int argc, char **argv)
{
	enum lmm_scheme scheme = LMM_SCHEME_REFCOUNT;
	unsigned ms = 1000;
	g.nworkers = 2;
	g.nspaces = 4;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--scheme")) {
			scheme = kvm_arg_scheme(v), i++;
		} else if (!strcmp(argv[i], "--workers")) {
			g.nworkers = kvm_arg_uint(v, argv[i]), i++;
		} else if (!strcmp(argv[i], "--spaces")) {
			g.nspaces = kvm_arg_uint(v, argv[i]), i++;
		} else if (!strcmp(argv[i], "--ms")) {
			ms = kvm_arg_uint(v, argv[i]), i++;
		} else if (!strcmp(argv[i], "--eager")) {
			g.eager = true;
		} else if (!strcmp(argv[i], "--negative")) {
			g.negative = true;
		} else if (!strcmp(argv[i], "--race")) {
			g.race = true;
		} else if (!strcmp(argv[i], "--bench")) {
			g.bench = true;
		} else {
			fprintf(stderr, "usage: %s [--scheme NAME] [--workers N] [--spaces N] [--ms N] [--eager] "
					"[--negative] [--race] | --bench [--spaces N] [--ms N]\n", argv[0]);
			return 2;
		}
	}
	/* Each space takes 4 table pages and a frame; live, zombie and lazily held ones at once. */
	if (g.nspaces * 3 + g.nworkers > POOL_PAGES / 4 || g.nworkers > 64) {
		fprintf(stderr, "kvm-uk: too many spaces or workers for the guest page pools\n");
		return 2;
	}
	int fds_before = kvm_count_fds();
	g.kvm = kvm_open_or_skip();
	g.vm = kvm_vm_new(g.kvm);
	g.ram = kvm_ram_new(g.vm, 0, RAM_SIZE);
	memcpy(g.ram + KVM_CODE_GPA, guest_code, sizeof(guest_code));
	kvm_identity_map(g.ram, RAM_SIZE);
	pthread_mutex_init(&g.pool_lock, NULL);
	g.cpus = calloc(g.nworkers, sizeof(*g.cpus));
	if (!g.cpus)
		kvm_die("out of memory");
	for (unsigned i = 0; i < g.nworkers; i++) {
		g.cpus[i].id = i;
		int e = kvm_vcpu_new(g.kvm, g.vm, i, KVM_PML4_GPA, HLT_ONLY, &g.cpus[i].vcpu);
		if (e)
			kvm_die("vCPU %u: %s", i, strerror(-e));
	}

	struct result r;
	if (g.bench) {
		bench(ms);
	} else {
		run(scheme, ms, false, &r);
		printf("kvm-uk (%s%s%s): %u workers (vCPUs), %u address spaces at a time, %ld made, %u ms\n",
		       lmm_scheme_name(scheme), g.eager ? ", eager" : "", g.negative ? ", --negative" : "",
		       g.nworkers, g.nspaces, RELAXED_LOAD(g.spaces_made), ms);
		printf("  %ld user tasks, %ld kernel tasks; %ld CR3 loads through sync_regs, %llu lazy hits\n",
		       r.user_tasks, r.kernel_tasks, r.cr3_loads, (unsigned long long)r.st.lazy_hits);
		printf("  %ld KVM_RUNs interrupted by lazymm's signal, %ld kernel tasks restarted under init's CR3\n",
		       r.intr_exits, r.restarts);
		printf("  %ld spaces torn down and freed, %ld shutdowns\n", RELAXED_LOAD(g.spaces_freed),
		       RELAXED_LOAD(g.shutdowns));
	}
	for (unsigned i = 0; i < g.nworkers; i++)
		kvm_vcpu_close(&g.cpus[i].vcpu);
	free(g.cpus);
	munmap(g.ram, RAM_SIZE);
	close(g.vm);
	close(g.kvm);
	pthread_mutex_destroy(&g.pool_lock);
	int fds_after = kvm_count_fds();
	KVM_CHECK(fds_after == fds_before, "file descriptors leaked");
	long v = RELAXED_LOAD(kvm_violations), shut = RELAXED_LOAD(g.shutdowns);
	if (g.negative) {
		/* Caught: the planted kind, and nothing else (an unrelated failure is no catch). */
		long p = RELAXED_LOAD(g.planted);
		bool caught = p > 0 && p == v;
		printf("%s: --negative: %ld violations caught (%ld walks of a poisoned table), %ld of another kind\n",
		       caught ? "ok" : "FAIL", p, shut, v - p);
		return caught ? 0 : 1;
	}
	if (g.race && scheme == LMM_SCHEME_SHOOTDOWN && !g.bench && r.restarts == 0) {
		printf("FAIL: --race: no kernel task was interrupted by a shootdown in %u ms: nothing was tested\n",
		       RACE_CAP_MS);
		return 1;
	}
	printf("%s: %ld violations\n", v ? "FAIL" : "ok", v);
	return v ? 1 : 0;
}
