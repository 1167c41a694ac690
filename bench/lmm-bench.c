/* SPDX-License-Identifier: MIT */
/*
 * lmm-bench: what a lazy hold costs, per scheme, next to a floor and to peers
 * that keep a context alive across the same lazy window with other
 * primitives. See docs/performance.md for what each figure means.
 *
 *   lmm-bench [--quick|--full] [--csv FILE] [--plot DIR] [--impl a,b,...]
 *             [--list] [SCENARIO...]
 *
 * Every figure is the median of repeated runs (warm-ups discarded) with min
 * and max. Repetitions of all implementations are interleaved, so drift on a
 * shared machine hits them alike, and ratios to floor and refcount are
 * printed next to each figure. Times are thread CPU time, so a preempted
 * worker does not count the time another process ran.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_MALLINFO2
#include <malloc.h>
#endif
/*
 * The green threads switch stacks with a few instructions on x86-64;
 * elsewhere, and under sanitizers (which must see every stack switch),
 * with ucontext, whose sigprocmask syscall then dominates pingpong.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LMMB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LMMB_SANITIZED 1
#endif
#endif
#if defined(__x86_64__) && !defined(LMMB_SANITIZED)
#define LMMB_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#include "bench.h"
#include "internal.h"

/*
 * A real call, as to a function in another file: gcc may otherwise clone a
 * noinline function per constant argument or drop unused parameters.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define BENCH_CALL __attribute__((noipa))
#else
#define BENCH_CALL __attribute__((noinline))
#endif /* sizeof(struct lmm_worker) for the memory scenario */

/* ------------------------------------------------------------------ */
/* implementations */

enum kind { K_LMM, K_FLOOR, K_PEER };

struct impl {
	const char *name;
	enum kind kind;
	enum lmm_scheme scheme;     /* K_LMM */
	const struct peer_ops *peer; /* K_PEER */
	const char *missing;         /* why it is skipped, or NULL */
	bool selected;
};

static const struct peer_ops peer_atomic_refcount;

#define MAX_IMPLS 16
static struct impl impls[MAX_IMPLS];
static unsigned nimpls;

static void add_impl(struct impl im)
{
	impls[nimpls++] = im;
}

static void discover_impls(void)
{
	/* Every scheme the library was built with, by number: a new one shows up by itself. */
	for (int s = LMM_SCHEME_REFCOUNT; s <= LMM_SCHEME_RCU; s++) {
		const char *name = lmm_scheme_name((enum lmm_scheme)s);
		add_impl((struct impl){ .name = name, .kind = K_LMM, .scheme = (enum lmm_scheme)s,
					.missing = lmm_scheme_available((enum lmm_scheme)s) ? NULL :
						   "not built into this liblazymm" });
	}
	add_impl((struct impl){ .name = "floor", .kind = K_FLOOR });
	add_impl((struct impl){ .name = "atomic-refcount", .kind = K_PEER, .peer = &peer_atomic_refcount });
#ifdef HAVE_URCU_QSBR
	add_impl((struct impl){ .name = "urcu-qsbr", .kind = K_PEER, .peer = &peer_urcu_qsbr });
#else
	add_impl((struct impl){ .name = "urcu-qsbr", .kind = K_PEER, .missing = "built without liburcu-qsbr (liburcu-dev)" });
#endif
#ifdef HAVE_URCU_MEMB
	add_impl((struct impl){ .name = "urcu-memb", .kind = K_PEER, .peer = &peer_urcu_memb });
#else
	add_impl((struct impl){ .name = "urcu-memb", .kind = K_PEER, .missing = "built without liburcu-memb (liburcu-dev)" });
#endif
#ifdef HAVE_CK
	add_impl((struct impl){ .name = "ck-hp", .kind = K_PEER, .peer = &peer_ck_hp });
	add_impl((struct impl){ .name = "ck-epoch", .kind = K_PEER, .peer = &peer_ck_epoch });
#else
	add_impl((struct impl){ .name = "ck-hp", .kind = K_PEER, .missing = "built without Concurrency Kit (libck-dev)" });
	add_impl((struct impl){ .name = "ck-epoch", .kind = K_PEER, .missing = "built without Concurrency Kit (libck-dev)" });
#endif
	for (unsigned i = 0; i < nimpls; i++) {
		impls[i].selected = true;
		if (!impls[i].missing && impls[i].peer && impls[i].peer->init)
			impls[i].missing = impls[i].peer->init();
	}
}

/* ------------------------------------------------------------------ */
/* contexts */

/* final-drop: the context whose free the driver waits for, and whether it ran. */
static _Atomic(struct bctx *) watched_ctx;
static atomic_bool watched_freed;

static struct bctx *bctx_alloc(void)
{
	/* Own cache lines: a context's count must not share a line with anything else. */
	size_t size = (sizeof(struct bctx) + 64 + 127) & ~(size_t)127;
	struct bctx *c = aligned_alloc(128, size);
	if (!c) {
		perror("lmm-bench: aligned_alloc");
		exit(1);
	}
	memset(c, 0, size);
	atomic_init(&c->count, 1);
	return c;
}

void bench_ctx_free(struct bctx *c)
{
	/* Relaxed: the driver reads the flag after its barrier, which orders the free before it. */
	if (atomic_load_explicit(&watched_ctx, memory_order_relaxed) == c)
		atomic_store_explicit(&watched_freed, true, memory_order_relaxed);
	free(c);
}

/* The application's hooks for lazymm. switch_ctx stands for installing page tables. */
BENCH_CALL static void bench_switch_ctx(struct bctx *prev, struct bctx *next)
{
	/* Keeps the call and its arguments: the install is what the lazy hit avoids. */
	__asm__ volatile("" : : "r"(prev), "r"(next) : "memory");
}

static void lmm_hook_switch(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w;
	bench_switch_ctx((struct bctx *)(void *)prev, (struct bctx *)(void *)next);
}

static void lmm_hook_teardown(struct lmm_ctx *ctx)
{
	(void)ctx;
}

static void lmm_hook_free(struct lmm_ctx *ctx)
{
	bench_ctx_free((struct bctx *)(void *)ctx);
}

static const struct lmm_ops bench_lmm_ops = { lmm_hook_switch, lmm_hook_teardown, lmm_hook_free };

/* ------------------------------------------------------------------ */
/* floor: the same loops, two thread-local stores through a call */

static __thread struct bctx *floor_current;
static __thread uintptr_t floor_slot;

BENCH_CALL static void floor_switch(struct bctx *next)
{
	floor_current = next;
	floor_slot = (uintptr_t)next;
	/* Keeps the stores and the call: the compiler may not fold loop iterations. */
	__asm__ volatile("" ::: "memory");
}

/* ------------------------------------------------------------------ */
/* peers: the generic switch, a copy of lib/switch.c's state machine */

static struct bctx peer_init_ctx; /* the peers' init context: never retired */

BENCH_CALL static void peer_switch(struct bthread *t, struct bctx *next)
{
	const struct peer_ops *p = t->peer;
	struct bctx *active = t->active;

	if (!next) {
		if (t->current) {
			t->current = NULL;
			if (active != &peer_init_ctx)
				p->lazy_enter(t, active);
		}
	} else if (next == active) {
		if (!t->current) {
			t->current = next;
			if (active != &peer_init_ctx)
				p->lazy_resume(t, active);
		}
	} else {
		bool was_lazy = !t->current && active != &peer_init_ctx;
		t->current = next;
		bench_switch_ctx(active, next);
		t->active = next;
		if (was_lazy)
			p->lazy_release(t, active);
	}
}

static void peer_unlazy(struct bthread *t)
{
	struct bctx *active = t->active;
	if (!t->current && active != &peer_init_ctx) {
		bench_switch_ctx(active, &peer_init_ctx);
		t->active = &peer_init_ctx;
		t->peer->lazy_release(t, active);
	}
}

/* atomic-refcount: what refcount does, written inline with C11 atomics. */

static void arc_drop(struct bctx *c)
{
	/*
	 * Acq_rel: the release half orders our use of c before its free; the
	 * acquire half (on the last drop) pairs with every earlier drop's
	 * release. One RMW instead of release + fence: the same instruction on
	 * x86, and ThreadSanitizer, which ignores standalone fences, sees it.
	 */
	if (atomic_fetch_sub_explicit(&c->count, 1, memory_order_acq_rel) == 1)
		bench_ctx_free(c);
}

static void arc_lazy_enter(struct bthread *t, struct bctx *c)
{
	(void)t;
	/* Relaxed: the task leaving c still holds a reference. */
	atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
}

static void arc_lazy_resume(struct bthread *t, struct bctx *c)
{
	(void)t;
	/* Relaxed: the resumed task holds its own reference, this is never the last. */
	atomic_fetch_sub_explicit(&c->count, 1, memory_order_relaxed);
}

static void arc_lazy_release(struct bthread *t, struct bctx *c)
{
	(void)t;
	arc_drop(c);
}

static void arc_retire(struct bthread *driver, struct bctx *c)
{
	(void)driver;
	arc_drop(c);
}

static void arc_nothing(struct bthread *t)
{
	(void)t;
}

static const char *arc_init(void)
{
	return NULL;
}

static const struct peer_ops peer_atomic_refcount = {
	.name = "atomic-refcount",
	.init = arc_init,
	.thread_enter = arc_nothing,
	.thread_exit = arc_nothing,
	.lazy_enter = arc_lazy_enter,
	.lazy_resume = arc_lazy_resume,
	.lazy_release = arc_lazy_release,
	.idle_unlazy = false,
	.retire = arc_retire,
	.barrier = arc_nothing,
	.ctx_bytes = sizeof(atomic_long),
	.worker_bytes = 0,
};

/* ------------------------------------------------------------------ */
/* one measurement's shared state and the generic operations */

struct run {
	const struct impl *im;
	struct lmm_domain *d;
	struct bthread driver;
};

static inline __attribute__((always_inline)) void bsw(enum kind k, struct bthread *t, struct bctx *c)
{
	if (k == K_LMM)
		lmm_switch(t->w, c ? &c->lmm : NULL);
	else if (k == K_FLOOR)
		floor_switch(c);
	else
		peer_switch(t, c);
}

static void b_idle_enter(struct run *r, struct bthread *t)
{
	if (r->im->kind == K_LMM) {
		lmm_idle_enter(t->w);
	} else if (r->im->kind == K_PEER) {
		if (t->peer->idle_unlazy)
			peer_unlazy(t);
		if (t->peer->idle_enter)
			t->peer->idle_enter(t);
	}
}

static void b_idle_exit(struct run *r, struct bthread *t)
{
	if (r->im->kind == K_LMM)
		lmm_idle_exit(t->w);
	else if (r->im->kind == K_PEER && t->peer->idle_exit)
		t->peer->idle_exit(t);
}

static void run_open(struct run *r, const struct impl *im, unsigned max_workers)
{
	memset(r, 0, sizeof(*r));
	r->im = im;
	if (im->kind == K_LMM) {
		struct lmm_config cfg = { .scheme = im->scheme, .ops = &bench_lmm_ops,
					  .max_workers = max_workers };
		int ret = lmm_domain_create(&cfg, &r->d);
		if (ret) {
			fprintf(stderr, "lmm-bench: lmm_domain_create(%s): %s\n", im->name, strerror(-ret));
			exit(1);
		}
	} else if (im->kind == K_PEER) {
		r->driver.peer = im->peer;
		r->driver.is_driver = true;
		r->driver.active = &peer_init_ctx;
		im->peer->thread_enter(&r->driver);
	}
}

static struct bctx *run_ctx_new(struct run *r)
{
	struct bctx *c = bctx_alloc();
	if (r->im->kind == K_LMM) {
		int ret = lmm_ctx_init(r->d, &c->lmm);
		if (ret) {
			fprintf(stderr, "lmm-bench: lmm_ctx_init: %s\n", strerror(-ret));
			exit(1);
		}
	}
	return c;
}

/* The owner's (last user's) reference goes; then wait for due frees. */
static void run_ctx_put(struct run *r, struct bctx *c)
{
	if (r->im->kind == K_LMM)
		lmm_put(&c->lmm);
	else if (r->im->kind == K_PEER)
		r->im->peer->retire(&r->driver, c);
	else
		bench_ctx_free(c);
}

static void run_barrier(struct run *r)
{
	if (r->im->kind == K_LMM) {
		int ret = lmm_barrier(r->d);
		if (ret)
			fprintf(stderr, "lmm-bench: lmm_barrier(%s): %s\n", r->im->name, strerror(-ret));
	} else if (r->im->kind == K_PEER) {
		r->im->peer->barrier(&r->driver);
	}
}

static void run_close(struct run *r)
{
	run_barrier(r);
	if (r->im->kind == K_LMM) {
		int ret = lmm_domain_destroy(r->d);
		if (ret)
			fprintf(stderr, "lmm-bench: lmm_domain_destroy(%s): %s\n", r->im->name, strerror(-ret));
	} else if (r->im->kind == K_PEER) {
		r->im->peer->thread_exit(&r->driver);
	}
}

static unsigned ncpus;
static int cpu_list[1024];

static void pin_self(unsigned index)
{
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
	if (ncpus == 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu_list[index % ncpus], &set);
	/* Best effort: a container may forbid it; the figures stay valid, only noisier. */
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
#else
	(void)index;
#endif
}

static void discover_cpus(void)
{
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int i = 0; i < CPU_SETSIZE && ncpus < 1024; i++)
			if (CPU_ISSET(i, &set))
				cpu_list[ncpus++] = i;
	}
#endif
	if (ncpus == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		ncpus = n > 0 ? (unsigned)n : 1;
		for (unsigned i = 0; i < ncpus && i < 1024; i++)
			cpu_list[i] = (int)i;
	}
}

static void thread_enter(struct run *r, struct bthread *t, unsigned index)
{
	memset(t, 0, sizeof(*t));
	t->index = index;
	pin_self(index);
	if (r->im->kind == K_LMM) {
		int ret = lmm_worker_online(r->d, t, &t->w);
		if (ret) {
			fprintf(stderr, "lmm-bench: lmm_worker_online: %s\n", strerror(-ret));
			exit(1);
		}
	} else if (r->im->kind == K_PEER) {
		t->peer = r->im->peer;
		t->active = &peer_init_ctx;
		t->peer->thread_enter(t);
	}
}

static void thread_leave(struct run *r, struct bthread *t)
{
	if (r->im->kind == K_LMM) {
		lmm_switch(t->w, NULL);
		int ret = lmm_worker_offline(t->w);
		if (ret)
			fprintf(stderr, "lmm-bench: lmm_worker_offline: %s\n", strerror(-ret));
	} else if (r->im->kind == K_PEER) {
		peer_switch(t, NULL);
		peer_unlazy(t);
		t->peer->thread_exit(t);
	}
}

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* options */

static struct {
	bool full;
	unsigned warmups, reps;
	unsigned run_ms;      /* one timed run */
	unsigned drop_rounds; /* final drops per final-drop run */
	const char *csv, *plot;
} opt = { .warmups = 1, .reps = 5, .run_ms = 20, .drop_rounds = 5 };

/* ------------------------------------------------------------------ */
/* timed loops: lazy-roundtrip, cross-switch, pingpong */

struct timed {
	struct run *r;
	unsigned nworkers;
	int scenario;
	struct bctx *a, *b;
	pthread_barrier_t start;
	atomic_bool stop;
	/* per worker results */
	uint64_t *ops, *cpu_ns;
};

#define BATCH 256

static inline bool stopped(struct timed *tm)
{
	/* Relaxed: a read-mostly flag; a few more iterations after it flips are harmless. */
	return atomic_load_explicit(&tm->stop, memory_order_relaxed);
}

static inline __attribute__((always_inline)) uint64_t loop_roundtrip(enum kind k, struct timed *tm,
								      struct bthread *t)
{
	uint64_t n = 0;
	struct bctx *a = tm->a;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			bsw(k, t, a);
			bsw(k, t, NULL);
		}
		n += BATCH;
	}
	return n;
}

static inline __attribute__((always_inline)) uint64_t loop_cross(enum kind k, struct timed *tm,
								  struct bthread *t)
{
	uint64_t n = 0;
	struct bctx *a = tm->a, *b = tm->b;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			bsw(k, t, a);
			bsw(k, t, NULL);
			bsw(k, t, b);
			bsw(k, t, NULL);
		}
		n += 2 * BATCH; /* A -> lazy -> B and B -> lazy -> A: two context switches */
	}
	return n;
}

/* --- pingpong: a tiny M:N green-thread scheduler --- */

struct gtask {
	void *sp;
#ifndef LMMB_ASM_SWITCH
	ucontext_t uc;
#endif
	struct gtask *partner;
	struct gsched *sched;
	void *stack;
};

struct gsched {
	void *sp; /* the scheduler's own stack while a task runs */
#ifndef LMMB_ASM_SWITCH
	ucontext_t uc;
#endif
	struct gtask *runnable; /* one slot: the token makes exactly one of a pair runnable */
	struct gtask *running;
};

#define GSTACK (64 * 1024)

#ifdef LMMB_ASM_SWITCH
/* Saves the callee-saved registers on the current stack, swaps stacks, restores. */
void lmmb_stack_swap(void **save_sp, void *to_sp);
__asm__(".text\n"
	".globl lmmb_stack_swap\n"
	".type lmmb_stack_swap,@function\n"
	"lmmb_stack_swap:\n"
	"\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
	"\tmovq %rsp, (%rdi)\n"
	"\tmovq %rsi, %rsp\n"
	"\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
	"\tret\n"
	".size lmmb_stack_swap, .-lmmb_stack_swap\n");
#endif

static __thread struct gsched *cur_sched;

static void gtask_to_sched(struct gtask *me)
{
#ifdef LMMB_ASM_SWITCH
	lmmb_stack_swap(&me->sp, me->sched->sp);
#else
	swapcontext(&me->uc, &me->sched->uc);
#endif
}

static void gsched_to_task(struct gsched *s, struct gtask *t)
{
#ifdef LMMB_ASM_SWITCH
	lmmb_stack_swap(&s->sp, t->sp);
#else
	swapcontext(&s->uc, &t->uc);
#endif
}

/* A task's whole life: hand the token to the partner, block until it comes back. */
static void gtask_main(void)
{
	struct gtask *me = cur_sched->running;
	for (;;) {
		me->sched->runnable = me->partner;
		gtask_to_sched(me);
	}
}

static void gtask_init(struct gtask *t, struct gsched *s, struct gtask *partner)
{
	t->sched = s;
	t->partner = partner;
	t->stack = aligned_alloc(64, GSTACK);
	if (!t->stack) {
		perror("lmm-bench: stack");
		exit(1);
	}
#ifdef LMMB_ASM_SWITCH
	uintptr_t top = ((uintptr_t)t->stack + GSTACK) & ~(uintptr_t)15;
	void **sp = (void **)top;
	*--sp = NULL;                          /* gtask_main's return slot: entry sees rsp % 16 == 8 */
	*--sp = (void *)(uintptr_t)gtask_main; /* lmmb_stack_swap's ret lands here */
	for (int i = 0; i < 6; i++)
		*--sp = NULL; /* rbp rbx r12 r13 r14 r15 */
	t->sp = sp;
#else
	getcontext(&t->uc);
	t->uc.uc_stack.ss_sp = t->stack;
	t->uc.uc_stack.ss_size = GSTACK;
	t->uc.uc_link = NULL;
	makecontext(&t->uc, gtask_main, 0);
#endif
}

/*
 * Every hand-off goes through the worker's idle path: the blocked task's
 * worker goes lazy (a context-less idle task), brackets its idle poll, and
 * resumes the partner, a task of the same context: the lazy hit.
 */
static inline __attribute__((always_inline)) uint64_t loop_pingpong(enum kind k, struct timed *tm,
								     struct bthread *t)
{
	struct gsched s = { 0 };
	struct gtask ta, tb;
	gtask_init(&ta, &s, &tb);
	gtask_init(&tb, &s, &ta);
	cur_sched = &s;
	s.runnable = &ta;
	uint64_t n = 0;
	struct bctx *a = tm->a;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			struct gtask *next = s.runnable;
			s.runnable = NULL;
			bsw(k, t, a);
			s.running = next;
			gsched_to_task(&s, next);
			bsw(k, t, NULL);
			b_idle_enter(tm->r, t);
			b_idle_exit(tm->r, t);
		}
		n += BATCH;
	}
	/* The tasks are parked on their own stacks forever: dropping the stacks ends them. */
	free(ta.stack);
	free(tb.stack);
	return n;
}

enum scenario_id { SC_ROUNDTRIP, SC_CROSS, SC_FINAL_DROP, SC_MEMORY, SC_PINGPONG, SC_NR };

struct timed_arg {
	struct timed *tm;
	unsigned index;
};

#define INSTANTIATE(loop)                                                      \
	static uint64_t loop##_lmm(struct timed *tm, struct bthread *t)        \
	{ return loop(K_LMM, tm, t); }                                         \
	static uint64_t loop##_floor(struct timed *tm, struct bthread *t)      \
	{ return loop(K_FLOOR, tm, t); }                                       \
	static uint64_t loop##_peer(struct timed *tm, struct bthread *t)       \
	{ return loop(K_PEER, tm, t); }
INSTANTIATE(loop_roundtrip)
INSTANTIATE(loop_cross)
INSTANTIATE(loop_pingpong)

static void *timed_worker(void *arg)
{
	struct timed_arg *ta = arg;
	struct timed *tm = ta->tm;
	struct bthread t;
	thread_enter(tm->r, &t, ta->index);
	pthread_barrier_wait(&tm->start);

	uint64_t (*fn)(struct timed *, struct bthread *);
	static uint64_t (*const table[3][3])(struct timed *, struct bthread *) = {
		{ loop_roundtrip_lmm, loop_roundtrip_floor, loop_roundtrip_peer },
		{ loop_cross_lmm, loop_cross_floor, loop_cross_peer },
		{ loop_pingpong_lmm, loop_pingpong_floor, loop_pingpong_peer },
	};
	int row = tm->scenario == SC_ROUNDTRIP ? 0 : tm->scenario == SC_CROSS ? 1 : 2;
	fn = table[row][tm->r->im->kind];

	uint64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	uint64_t n = fn(tm, &t);
	uint64_t c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	tm->ops[ta->index] = n;
	tm->cpu_ns[ta->index] = c1 - c0;
	thread_leave(tm->r, &t);
	return NULL;
}

/* One timed run; returns ns per op (CPU time), or ops per second for pingpong. */
static double timed_run(const struct impl *im, int scenario, unsigned nworkers)
{
	struct timed tm = { .nworkers = nworkers, .scenario = scenario };
	struct run r;
	run_open(&r, im, 0);
	tm.r = &r;
	tm.a = run_ctx_new(&r);
	tm.b = run_ctx_new(&r);
	tm.ops = calloc(nworkers, sizeof(uint64_t));
	tm.cpu_ns = calloc(nworkers, sizeof(uint64_t));
	pthread_t *th = calloc(nworkers, sizeof(pthread_t));
	struct timed_arg *args = calloc(nworkers, sizeof(*args));
	if (!tm.ops || !tm.cpu_ns || !th || !args) {
		perror("lmm-bench");
		exit(1);
	}
	atomic_init(&tm.stop, false);
	pthread_barrier_init(&tm.start, NULL, nworkers + 1);
	for (unsigned i = 0; i < nworkers; i++) {
		args[i] = (struct timed_arg){ &tm, i };
		if (pthread_create(&th[i], NULL, timed_worker, &args[i])) {
			perror("lmm-bench: pthread_create");
			exit(1);
		}
	}
	pthread_barrier_wait(&tm.start);
	struct timespec nap = { opt.run_ms / 1000, (long)(opt.run_ms % 1000) * 1000000L };
	nanosleep(&nap, NULL);
	/* Relaxed: the workers poll it; join orders their results. */
	atomic_store_explicit(&tm.stop, true, memory_order_relaxed);
	uint64_t ops = 0, cpu = 0;
	for (unsigned i = 0; i < nworkers; i++) {
		pthread_join(th[i], NULL);
		ops += tm.ops[i];
		cpu += tm.cpu_ns[i];
	}
	pthread_barrier_destroy(&tm.start);
	run_ctx_put(&r, tm.a);
	run_ctx_put(&r, tm.b);
	run_close(&r);
	free(tm.ops);
	free(tm.cpu_ns);
	free(th);
	free(args);
	if (ops == 0 || cpu == 0)
		return 0;
	if (scenario == SC_PINGPONG) {
		/* Per-core rate times the cores the workers can use at once. */
		unsigned usable = nworkers < ncpus ? nworkers : ncpus;
		return (double)ops * 1e9 / (double)cpu * usable;
	}
	return (double)cpu / (double)ops;
}

/* ------------------------------------------------------------------ */
/* final-drop */

struct drop {
	struct run *r;
	unsigned nworkers;
	pthread_mutex_t lock;
	pthread_cond_t wake, asleep_cond;
	unsigned round, asleep;
	bool quit;
	struct bctx *ctx;
};

struct drop_arg {
	struct drop *dr;
	unsigned index;
};

static void *drop_worker(void *arg)
{
	struct drop_arg *da = arg;
	struct drop *dr = da->dr;
	struct run *r = dr->r;
	struct bthread t;
	thread_enter(r, &t, da->index);
	enum kind k = r->im->kind;
	unsigned seen = 0;

	b_idle_enter(r, &t); /* asleep until the first round */
	pthread_mutex_lock(&dr->lock);
	for (;;) {
		while (dr->round == seen && !dr->quit)
			pthread_cond_wait(&dr->wake, &dr->lock);
		if (dr->quit)
			break;
		seen = dr->round;
		struct bctx *c = dr->ctx;
		pthread_mutex_unlock(&dr->lock);

		b_idle_exit(r, &t);
		/* Run a task of this round's context (ending the lazy hold on the last one), then idle lazily. */
		bsw(k, &t, c);
		bsw(k, &t, NULL);
		b_idle_enter(r, &t);

		pthread_mutex_lock(&dr->lock);
		if (++dr->asleep == dr->nworkers)
			pthread_cond_signal(&dr->asleep_cond);
	}
	pthread_mutex_unlock(&dr->lock);
	b_idle_exit(r, &t);
	thread_leave(r, &t);
	return NULL;
}

struct drop_result {
	double latency_ns, signals, conversions, freed;
};

static void lmm_counters(struct run *r, uint64_t *signals, uint64_t *conversions)
{
	*signals = *conversions = 0;
	if (r->im->kind != K_LMM)
		return;
	struct lmm_stats st;
	if (lmm_stats(r->d, &st) == 0) {
		*signals = st.signals_sent + st.rcu_nudges;
		*conversions = st.conversions;
	}
}

static struct drop_result drop_run(const struct impl *im, unsigned nworkers)
{
	struct drop dr = { .nworkers = nworkers };
	struct run r;
	run_open(&r, im, nworkers > 256 ? nworkers : 0);
	dr.r = &r;
	pthread_mutex_init(&dr.lock, NULL);
	pthread_cond_init(&dr.wake, NULL);
	pthread_cond_init(&dr.asleep_cond, NULL);
	pthread_t *th = calloc(nworkers, sizeof(pthread_t));
	struct drop_arg *args = calloc(nworkers, sizeof(*args));
	if (!th || !args) {
		perror("lmm-bench");
		exit(1);
	}
	for (unsigned i = 0; i < nworkers; i++) {
		args[i] = (struct drop_arg){ &dr, i };
		if (pthread_create(&th[i], NULL, drop_worker, &args[i])) {
			perror("lmm-bench: pthread_create");
			exit(1);
		}
	}

	struct drop_result res = { 0 };
	for (unsigned round = 0; round < opt.drop_rounds; round++) {
		struct bctx *c = run_ctx_new(&r);
		pthread_mutex_lock(&dr.lock);
		dr.ctx = c;
		dr.asleep = 0;
		dr.round++;
		pthread_cond_broadcast(&dr.wake);
		while (dr.asleep < nworkers)
			pthread_cond_wait(&dr.asleep_cond, &dr.lock);
		pthread_mutex_unlock(&dr.lock);

		/* Every worker holds c lazily and sleeps in its idle path. */
		uint64_t s0, v0, s1, v1;
		lmm_counters(&r, &s0, &v0);
		/* Relaxed: set before the put that can free c; read back after the barrier. */
		atomic_store_explicit(&watched_ctx, c, memory_order_relaxed);
		atomic_store_explicit(&watched_freed, false, memory_order_relaxed);
		uint64_t t0 = now_ns(CLOCK_MONOTONIC);
		run_ctx_put(&r, c);
		run_barrier(&r);
		uint64_t t1 = now_ns(CLOCK_MONOTONIC);
		/* Relaxed: the barrier returned after every free it waited for (its own acquire). */
		bool freed = atomic_load_explicit(&watched_freed, memory_order_relaxed);
		atomic_store_explicit(&watched_ctx, NULL, memory_order_relaxed);
		lmm_counters(&r, &s1, &v1);
		res.latency_ns += (double)(t1 - t0);
		res.signals += (double)(s1 - s0);
		res.conversions += (double)(v1 - v0);
		res.freed += freed ? 1.0 : 0.0;
	}
	pthread_mutex_lock(&dr.lock);
	dr.quit = true;
	pthread_cond_broadcast(&dr.wake);
	pthread_mutex_unlock(&dr.lock);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(th[i], NULL);
	run_close(&r);
	pthread_mutex_destroy(&dr.lock);
	pthread_cond_destroy(&dr.wake);
	pthread_cond_destroy(&dr.asleep_cond);
	free(th);
	free(args);
	double n = opt.drop_rounds;
	res.latency_ns /= n;
	res.signals /= n;
	res.conversions /= n;
	res.freed /= n;
	return res;
}

/* ------------------------------------------------------------------ */
/* memory */

static size_t heap_in_use(void)
{
#ifdef HAVE_MALLINFO2
	return mallinfo2().uordblks;
#else
	return 0;
#endif
}

struct mem_online {
	struct run *r;
	pthread_barrier_t go, done, leave;
};

static void *mem_worker(void *arg)
{
	struct mem_online *mo = arg;
	struct bthread t;
	pthread_barrier_wait(&mo->go);
	thread_enter(mo->r, &t, 0);
	pthread_barrier_wait(&mo->done);
	pthread_barrier_wait(&mo->leave);
	thread_leave(mo->r, &t);
	return NULL;
}

#define MEM_CTXS 256
#define MEM_WORKERS 4

/* Bytes per context and per worker: the embedded struct plus what the heap grew by. */
static void memory_measure(const struct impl *im, double *ctx_bytes, double *worker_bytes)
{
	if (im->kind == K_FLOOR) {
		*ctx_bytes = *worker_bytes = 0;
		return;
	}
	if (im->kind == K_PEER) {
		*ctx_bytes = (double)im->peer->ctx_bytes;
		*worker_bytes = (double)im->peer->worker_bytes;
		return;
	}
	struct run r;
	run_open(&r, im, 0);
	static struct bctx *cs[MEM_CTXS];
	for (unsigned i = 0; i < MEM_CTXS; i++)
		cs[i] = bctx_alloc(); /* outside the measured window: the embedding is the application's */
	size_t h0 = heap_in_use();
	for (unsigned i = 0; i < MEM_CTXS; i++)
		if (lmm_ctx_init(r.d, &cs[i]->lmm))
			exit(1);
	size_t h1 = heap_in_use();
	*ctx_bytes = (double)sizeof(struct lmm_ctx) + (double)(h1 - h0) / MEM_CTXS;
	for (unsigned i = 0; i < MEM_CTXS; i++)
		lmm_put(&cs[i]->lmm);
	lmm_barrier(r.d);

	struct mem_online mo = { .r = &r };
	pthread_barrier_init(&mo.go, NULL, MEM_WORKERS + 1);
	pthread_barrier_init(&mo.done, NULL, MEM_WORKERS + 1);
	pthread_barrier_init(&mo.leave, NULL, MEM_WORKERS + 1);
	pthread_t th[MEM_WORKERS];
	for (unsigned i = 0; i < MEM_WORKERS; i++)
		if (pthread_create(&th[i], NULL, mem_worker, &mo))
			exit(1);
	/* The threads exist before the first snapshot: only going online is measured. */
	h0 = heap_in_use();
	pthread_barrier_wait(&mo.go);
	pthread_barrier_wait(&mo.done);
	h1 = heap_in_use();
	pthread_barrier_wait(&mo.leave);
	for (unsigned i = 0; i < MEM_WORKERS; i++)
		pthread_join(th[i], NULL);
	*worker_bytes = h1 > h0 ? (double)(h1 - h0) / MEM_WORKERS : (double)sizeof(struct lmm_worker);
	pthread_barrier_destroy(&mo.go);
	pthread_barrier_destroy(&mo.done);
	pthread_barrier_destroy(&mo.leave);
	run_close(&r);
}

/* ------------------------------------------------------------------ */
/* results */

struct result {
	int scenario;
	const char *impl;
	unsigned workers;
	const char *metric, *unit;
	double median, min, max;
};

static struct result *results;
static size_t nresults, cap_results;

static const char *const scenario_names[SC_NR] = {
	[SC_ROUNDTRIP] = "lazy-roundtrip",
	[SC_CROSS] = "cross-switch",
	[SC_FINAL_DROP] = "final-drop",
	[SC_MEMORY] = "memory",
	[SC_PINGPONG] = "pingpong",
};

static const char *const scenario_help[SC_NR] = {
	[SC_ROUNDTRIP] = "switch(A), switch(NULL) on one shared context; ns per round trip",
	[SC_CROSS] = "A -> lazy -> B -> lazy -> A on two shared contexts; ns per context switch",
	[SC_FINAL_DROP] = "last put + barrier while N workers sleep holding the context lazily",
	[SC_MEMORY] = "bytes per context and per worker",
	[SC_PINGPONG] = "green-thread pairs of one context hand a token through the idle path; switches/s",
};

static bool scenario_selected[SC_NR];

static void add_result(int sc, const char *impl, unsigned workers, const char *metric,
		       const char *unit, double median, double min, double max)
{
	if (nresults == cap_results) {
		cap_results = cap_results ? 2 * cap_results : 256;
		results = realloc(results, cap_results * sizeof(*results));
		if (!results) {
			perror("lmm-bench");
			exit(1);
		}
	}
	results[nresults++] = (struct result){ sc, impl, workers, metric, unit, median, min, max };
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void summarise(double *v, unsigned n, double *median, double *min, double *max)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*min = v[0];
	*max = v[n - 1];
	*median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const struct result *find_result(int sc, const char *impl, unsigned workers, const char *metric)
{
	for (size_t i = 0; i < nresults; i++)
		if (results[i].scenario == sc && results[i].workers == workers &&
		    strcmp(results[i].impl, impl) == 0 && strcmp(results[i].metric, metric) == 0)
			return &results[i];
	return NULL;
}

static void ratio(char *buf, size_t len, const struct result *x, const char *base)
{
	const struct result *b = find_result(x->scenario, base, x->workers, x->metric);
	if (!b || b->median == 0 || strcmp(x->impl, base) == 0)
		snprintf(buf, len, "%s", b && strcmp(x->impl, base) == 0 ? "1" : "-");
	else
		snprintf(buf, len, "%.2f", x->median / b->median);
}

static void fmt_num(char *buf, size_t len, double v)
{
	if (v != 0 && (v >= 1e6 || v < 0.01))
		snprintf(buf, len, "%.3g", v);
	else
		snprintf(buf, len, "%.2f", v);
}

static void print_table(int sc)
{
	printf("\n== %s: %s\n", scenario_names[sc], scenario_help[sc]);
	printf("%-16s %7s  %-12s %12s %12s %12s  %-9s %8s %8s\n", "impl", "workers", "metric", "median",
	       "min", "max", "unit", "x floor", "x refcnt");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *x = &results[i];
		if (x->scenario != sc)
			continue;
		char med[32], mn[32], mx[32], rf[32], rr[32];
		fmt_num(med, sizeof(med), x->median);
		fmt_num(mn, sizeof(mn), x->min);
		fmt_num(mx, sizeof(mx), x->max);
		ratio(rf, sizeof(rf), x, "floor");
		ratio(rr, sizeof(rr), x, "refcount");
		printf("%-16s %7u  %-12s %12s %12s %12s  %-9s %8s %8s\n", x->impl, x->workers, x->metric,
		       med, mn, mx, x->unit, rf, rr);
	}
	fflush(stdout);
}

static void write_csv(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "lmm-bench: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	fprintf(f, "scenario,impl,workers,metric,median,min,max,unit\n");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *x = &results[i];
		fprintf(f, "%s,%s,%u,%s,%.6g,%.6g,%.6g,%s\n", scenario_names[x->scenario], x->impl,
			x->workers, x->metric, x->median, x->min, x->max, x->unit);
	}
	fclose(f);
	fprintf(stderr, "lmm-bench: wrote %s\n", path);
}

/* The metric a scenario's plot shows. */
static const char *const plot_metric[SC_NR] = {
	[SC_ROUNDTRIP] = "roundtrip",
	[SC_CROSS] = "switch",
	[SC_FINAL_DROP] = "latency",
	[SC_MEMORY] = "ctx_bytes",
	[SC_PINGPONG] = "switches",
};

/* Log axes: an implementation with a zero figure (floor's memory) has no line. */
static bool plottable(int sc, const char *impl)
{
	bool any = false;
	for (size_t i = 0; i < nresults; i++) {
		const struct result *x = &results[i];
		if (x->scenario == sc && strcmp(x->impl, impl) == 0 && strcmp(x->metric, plot_metric[sc]) == 0) {
			if (x->median <= 0)
				return false;
			any = true;
		}
	}
	return any;
}

static void write_plots(const char *dir)
{
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		fprintf(stderr, "lmm-bench: note: gnuplot not installed, no plots written\n");
		return;
	}
	if (mkdir(dir, 0777) && errno != EEXIST) {
		fprintf(stderr, "lmm-bench: %s: %s\n", dir, strerror(errno));
		return;
	}
	for (int sc = 0; sc < SC_NR; sc++) {
		if (!scenario_selected[sc])
			continue;
		const char *unit = NULL;
		for (size_t i = 0; i < nresults; i++)
			if (results[i].scenario == sc && strcmp(results[i].metric, plot_metric[sc]) == 0)
				unit = results[i].unit;
		if (!unit)
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s.svg", dir, scenario_names[sc]);
		FILE *g = popen("gnuplot", "w");
		if (!g)
			continue;
		fprintf(g, "set terminal svg size 800,500 dynamic background rgb 'white'\n");
		fprintf(g, "set output '%s'\n", path);
		fprintf(g, "set title '%s: %s (median, bars min..max)'\n", scenario_names[sc], plot_metric[sc]);
		fprintf(g, "set xlabel 'workers'\nset ylabel '%s'\nset key outside right\nset grid\n", unit);
		if (sc == SC_MEMORY) {
			/* One figure per implementation: bars, not lines over workers. */
			fprintf(g, "set xlabel ''\nset style fill solid 0.5\nset boxwidth 0.6\nset xtics rotate by -30\n");
			fprintf(g, "plot '-' using 0:2:xtic(1) with boxes notitle\n");
			for (size_t i = 0; i < nresults; i++)
				if (results[i].scenario == sc && strcmp(results[i].metric, plot_metric[sc]) == 0)
					fprintf(g, "%s %g\n", results[i].impl, results[i].median);
			fprintf(g, "e\n");
			if (pclose(g) == 0)
				fprintf(stderr, "lmm-bench: wrote %s\n", path);
			continue;
		}
		fprintf(g, "set logscale x 2\nset logscale y\n");
		fprintf(g, "plot ");
		bool first = true;
		for (unsigned m = 0; m < nimpls; m++) {
			if (!plottable(sc, impls[m].name))
				continue;
			fprintf(g, "%s'-' using 1:2:3:4 with yerrorlines title '%s'", first ? "" : ", ",
				impls[m].name);
			first = false;
		}
		fprintf(g, "\n");
		for (unsigned m = 0; m < nimpls; m++) {
			if (!plottable(sc, impls[m].name))
				continue;
			for (size_t i = 0; i < nresults; i++) {
				const struct result *x = &results[i];
				if (x->scenario == sc && strcmp(x->impl, impls[m].name) == 0 &&
				    strcmp(x->metric, plot_metric[sc]) == 0)
					fprintf(g, "%u %g %g %g\n", x->workers, x->median, x->min, x->max);
			}
			fprintf(g, "e\n");
		}
		if (first)
			fprintf(stderr, "lmm-bench: nothing to plot for %s\n", scenario_names[sc]);
		if (pclose(g) == 0 && !first)
			fprintf(stderr, "lmm-bench: wrote %s\n", path);
	}
}

/* ------------------------------------------------------------------ */
/* the scenarios */

static unsigned progress_done, progress_total;

static void progress(const char *sc, const char *impl, unsigned workers)
{
	progress_done++;
	unsigned pct = progress_total ? 100 * progress_done / progress_total : 0;
	if (isatty(STDERR_FILENO)) {
		fprintf(stderr, "\r[%3u%%] %-15s %-16s %3u workers   ", pct, sc, impl, workers);
		if (progress_done == progress_total)
			fprintf(stderr, "\n");
	} else {
		/* A log, not a terminal: one line per finished figure group is enough. */
		static const char *last_sc;
		static unsigned last_workers;
		if (sc != last_sc || workers != last_workers)
			fprintf(stderr, "[%3u%%] %s, %u workers\n", pct, sc, workers);
		last_sc = sc;
		last_workers = workers;
	}
}

static unsigned worker_counts(int sc, unsigned *out)
{
	unsigned n = 0;
	if (sc == SC_FINAL_DROP) {
		static const unsigned sleepers[] = { 1, 4, 16, 64 };
		for (unsigned i = 0; i < 4; i++)
			out[n++] = sleepers[i];
		return n;
	}
	if (sc == SC_MEMORY) {
		out[n++] = 1;
		return n;
	}
	/* 1, 2, ... nproc (powers of two past 8, or in a quick run), nproc, 2 x nproc. */
	for (unsigned w = 1; w <= ncpus; w = (opt.full && w < 8) ? w + 1 : 2 * w)
		out[n++] = w;
	if (out[n - 1] != ncpus)
		out[n++] = ncpus;
	out[n++] = 2 * ncpus;
	return n;
}

static bool impl_runs(const struct impl *im)
{
	return im->selected && !im->missing;
}

static void scenario_timed(int sc)
{
	unsigned counts[64];
	unsigned nc = worker_counts(sc, counts);
	unsigned total = opt.warmups + opt.reps;
	double *v = calloc((size_t)nimpls * total, sizeof(double));
	for (unsigned ci = 0; ci < nc; ci++) {
		/* Interleave: rep k of every implementation runs before rep k+1 of any. */
		for (unsigned rep = 0; rep < total; rep++) {
			for (unsigned m = 0; m < nimpls; m++) {
				if (!impl_runs(&impls[m]))
					continue;
				v[m * total + rep] = timed_run(&impls[m], sc, counts[ci]);
				if (rep == total - 1)
					progress(scenario_names[sc], impls[m].name, counts[ci]);
			}
		}
		for (unsigned m = 0; m < nimpls; m++) {
			if (!impl_runs(&impls[m]))
				continue;
			double med, mn, mx;
			summarise(&v[m * total + opt.warmups], opt.reps, &med, &mn, &mx);
			if (sc == SC_PINGPONG)
				add_result(sc, impls[m].name, counts[ci], "switches", "switch/s", med, mn, mx);
			else
				add_result(sc, impls[m].name, counts[ci], sc == SC_ROUNDTRIP ? "roundtrip" : "switch",
					   "ns", med, mn, mx);
		}
	}
	free(v);
}

static void scenario_final_drop(void)
{
	unsigned counts[8];
	unsigned nc = worker_counts(SC_FINAL_DROP, counts);
	unsigned total = opt.warmups + opt.reps;
	struct drop_result *v = calloc((size_t)nimpls * total, sizeof(*v));
	double *tmp = calloc(total, sizeof(double));
	for (unsigned ci = 0; ci < nc; ci++) {
		for (unsigned rep = 0; rep < total; rep++) {
			for (unsigned m = 0; m < nimpls; m++) {
				if (!impl_runs(&impls[m]) || impls[m].kind == K_FLOOR)
					continue;
				v[m * total + rep] = drop_run(&impls[m], counts[ci]);
				if (rep == total - 1)
					progress("final-drop", impls[m].name, counts[ci]);
			}
		}
		for (unsigned m = 0; m < nimpls; m++) {
			if (!impl_runs(&impls[m]) || impls[m].kind == K_FLOOR)
				continue;
			static const struct { const char *metric, *unit; size_t off; } fields[] = {
				{ "latency", "ns", offsetof(struct drop_result, latency_ns) },
				{ "signals", "per-drop", offsetof(struct drop_result, signals) },
				{ "conversions", "per-drop", offsetof(struct drop_result, conversions) },
				{ "freed", "fraction", offsetof(struct drop_result, freed) },
			};
			for (unsigned f = 0; f < 4; f++) {
				if (impls[m].kind != K_LMM && (f == 1 || f == 2))
					continue; /* lmm_stats counters: lazymm only */
				for (unsigned k = 0; k < opt.reps; k++)
					memcpy(&tmp[k], (char *)&v[m * total + opt.warmups + k] + fields[f].off,
					       sizeof(double));
				double med, mn, mx;
				summarise(tmp, opt.reps, &med, &mn, &mx);
				add_result(SC_FINAL_DROP, impls[m].name, counts[ci], fields[f].metric, fields[f].unit,
					   med, mn, mx);
			}
		}
	}
	free(v);
	free(tmp);
}

static void scenario_memory(void)
{
#ifndef HAVE_MALLINFO2
	fprintf(stderr, "lmm-bench: note: no mallinfo2: lazymm heap bytes are not measured\n");
#endif
	for (unsigned m = 0; m < nimpls; m++) {
		if (!impl_runs(&impls[m]))
			continue;
		double cb, wb;
		memory_measure(&impls[m], &cb, &wb);
		add_result(SC_MEMORY, impls[m].name, 1, "ctx_bytes", "bytes", cb, cb, cb);
		add_result(SC_MEMORY, impls[m].name, 1, "worker_bytes", "bytes", wb, wb, wb);
		progress("memory", impls[m].name, 1);
	}
}

/* ------------------------------------------------------------------ */
/* main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lmm-bench [--quick|--full] [--csv FILE] [--plot DIR] [--impl NAME,...] [--list] [SCENARIO...]\n"
		"  --quick      short runs (the default; the whole run takes under a minute on 2 cores)\n"
		"  --full       longer runs, more repetitions, every worker count up to nproc\n"
		"  --csv FILE   write rows scenario,impl,workers,metric,median,min,max,unit\n"
		"  --plot DIR   write one SVG per scenario (needs gnuplot)\n"
		"  --impl LIST  only these implementations (comma-separated)\n"
		"  --list       print the scenarios and implementations, then exit\n");
}

static void list(void)
{
	printf("scenarios:\n");
	for (int sc = 0; sc < SC_NR; sc++)
		printf("  %-15s %s\n", scenario_names[sc], scenario_help[sc]);
	printf("implementations:\n");
	for (unsigned m = 0; m < nimpls; m++)
		printf("  %-15s %s%s%s%s\n", impls[m].name,
		       impls[m].kind == K_LMM ? "lazymm scheme" : impls[m].kind == K_FLOOR ? "floor" : "peer",
		       impls[m].missing ? " (skipped: " : "", impls[m].missing ? impls[m].missing : "",
		       impls[m].missing ? ")" : "");
}

static void select_impls(const char *spec)
{
	for (unsigned m = 0; m < nimpls; m++)
		impls[m].selected = false;
	char *copy = strdup(spec), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		bool found = false;
		for (unsigned m = 0; m < nimpls; m++) {
			if (strcmp(impls[m].name, tok) == 0) {
				impls[m].selected = true;
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr, "lmm-bench: unknown implementation '%s' (see --list)\n", tok);
			exit(2);
		}
	}
	free(copy);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "full", no_argument, NULL, 'f' },
		{ "csv", required_argument, NULL, 'c' },
		{ "plot", required_argument, NULL, 'p' },
		{ "impl", required_argument, NULL, 'i' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	discover_cpus();
	discover_impls();
	const char *impl_spec = NULL;
	bool do_list = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q': opt.full = false; break;
		case 'f': opt.full = true; break;
		case 'c': opt.csv = optarg; break;
		case 'p': opt.plot = optarg; break;
		case 'i': impl_spec = optarg; break;
		case 'l': do_list = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (do_list) {
		list();
		return 0;
	}
	if (impl_spec)
		select_impls(impl_spec);
	if (opt.full) {
		opt.warmups = 2;
		opt.reps = 11;
		opt.run_ms = 200;
		opt.drop_rounds = 50;
	}
	bool any = false;
	for (int i = optind; i < argc; i++) {
		bool found = false;
		for (int sc = 0; sc < SC_NR; sc++) {
			if (strcmp(argv[i], scenario_names[sc]) == 0) {
				scenario_selected[sc] = found = any = true;
			}
		}
		if (!found) {
			fprintf(stderr, "lmm-bench: unknown scenario '%s' (see --list)\n", argv[i]);
			return 2;
		}
	}
	if (!any)
		for (int sc = 0; sc < SC_NR; sc++)
			scenario_selected[sc] = true;

	printf("lmm-bench: %s pass, %u cpus, %u warm-up + %u measured runs per figure, %u ms per timed run\n",
	       opt.full ? "full" : "quick", ncpus, opt.warmups, opt.reps, opt.run_ms);
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
	printf("workers pinned round-robin to the %u cpus of this process's affinity mask\n", ncpus);
#else
	printf("workers not pinned: no pthread_setaffinity_np on this platform\n");
#endif
	for (unsigned m = 0; m < nimpls; m++)
		if (impls[m].selected && impls[m].missing)
			printf("note: %s skipped: %s\n", impls[m].name, impls[m].missing);

	unsigned selected_impls = 0;
	for (unsigned m = 0; m < nimpls; m++)
		selected_impls += impl_runs(&impls[m]);
	for (int sc = 0; sc < SC_NR; sc++) {
		if (!scenario_selected[sc])
			continue;
		unsigned counts[64];
		unsigned runs = selected_impls;
		for (unsigned m = 0; sc == SC_FINAL_DROP && m < nimpls; m++)
			runs -= impl_runs(&impls[m]) && impls[m].kind == K_FLOOR; /* no lifetime to end */
		progress_total += worker_counts(sc, counts) * runs;
	}

	for (int sc = 0; sc < SC_NR; sc++) {
		if (!scenario_selected[sc])
			continue;
		if (sc == SC_FINAL_DROP)
			scenario_final_drop();
		else if (sc == SC_MEMORY)
			scenario_memory();
		else
			scenario_timed(sc);
		print_table(sc);
	}
	if (opt.csv)
		write_csv(opt.csv);
	if (opt.plot)
		write_plots(opt.plot);
	return 0;
}
