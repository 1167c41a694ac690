/* SPDX-License-Identifier: MIT */
/*
 * An M:N green-thread scheduler on lazymm, to start a runtime from.
 *
 * Worker pthreads (the "CPUs") run green tasks, each on its own mmap'd stack
 * with a guard page, switched with Boost.Context's fcontext (no system call)
 * or, where that is missing, with ucontext. Each worker has its own run
 * queue; a worker whose queue is empty steals from the others, and when
 * there is nothing anywhere it sleeps on a futex until a submit wakes it:
 * no polling, no timeout. Every task belongs to a process, a context with
 * its own data; between tasks the scheduler itself runs context-less, so the
 * last process stays installed lazily and the next task of the same process
 * is a lazy hit. Processes die when their last task exits, usually while
 * some worker still holds them lazily: teardown runs at once, free only once
 * no worker has them installed. A service task adopts process contexts for
 * a while (lmm_switch(w, ctx) ... lmm_switch(w, NULL): kthread_use_mm) and
 * parks between its rounds until a process dies. Under ASan and TSan every
 * stack switch is announced through their fiber interfaces.
 *
 * lazymm's worker-loop rules (lazymm(7), "The worker loop: green threads"),
 * each marked "Rule N" where the code follows it:
 *   1. switch to the task's context, run the task, then switch to NULL
 *      before the task can be queued anywhere (it may go on elsewhere);
 *   2. bracket only real sleeps with lmm_idle_enter/lmm_idle_exit, and call
 *      no lmm_switch inside the bracket;
 *   3. never hold a run-queue lock across lmm_switch (free may run inside);
 *   4. a task that may have migrated re-reads its worker after every switch.
 *
 * It checks its own invariants and exits non-zero on any violation:
 *   - a task runs only with its own process current and installed, on the
 *     worker that switched to it;
 *   - switch_ctx is called with what the worker really had installed;
 *   - free runs once, after teardown, on a process no worker has installed;
 *   - every process is freed, and its data adds up;
 *   - with --migrate (every yield queues the task on the next worker, and
 *     workers do not steal), every slice after a task's first migrated;
 *   - with --overflow (the service task recurses without end), the overflow
 *     faults in that task's guard page (exit 0), nowhere else.
 *
 *   cc -O2 greenthreads.c $(pkg-config --cflags --libs lazymm) -o greenthreads
 *   cc -O2 -DGREENTHREADS_FCONTEXT greenthreads.c $(pkg-config --cflags --libs lazymm) \
 *      -lboost_context -o greenthreads                 # Debian: libboost-context-dev
 *   ./greenthreads --scheme hazard [--workers 3] [--procs 24] [--tasks 4] [--steps 200]
 *                  [--migrate] [--overflow] [--bench MS]
 * --bench MS: every task yields at every step until MS ms have passed, then
 * the last line is "switches/s N": task switches (scheduler -> task ->
 * scheduler) per CPU second of the workers, times the CPUs they can use.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <lazymm.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define GT_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define GT_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GT_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define GT_TSAN 1
#endif
#endif
#ifdef GT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef GT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifdef GREENTHREADS_FCONTEXT
/* Boost.Context's C-linkage core (boost/context/detail/fcontext.hpp), declared by hand. */
typedef void *fcontext_t;
typedef struct {
	fcontext_t fctx;
	void *data;
} transfer_t;
extern transfer_t jump_fcontext(fcontext_t const to, void *vp);
extern fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));
#define GT_SWITCH "fcontext"
#else
#include <ucontext.h>
#define GT_SWITCH "ucontext"
#endif

#define STACK_SIZE (128 * 1024)
#define PROC_LIVE 0x50524f43u /* "PROC" */
#define PROC_DEAD 0xdeadbeefu

struct proc {
	struct lmm_ctx ctx; /* first: a struct lmm_ctx * is a struct proc * */
	unsigned id;
	atomic_uint magic;
	atomic_int installed_on; /* workers whose switch_ctx installed it and has not left it */
	atomic_int teardowns, frees;
	atomic_long steps;       /* its tasks' steps, added as they exit, and adoptions */
	atomic_long adoptions;   /* by the service task */
	atomic_long expected_steps; /* without adoptions */
	atomic_bool dead;        /* teardown ran: the service drops the table's reference */
};

/* A machine context: where a task, or a worker's scheduler loop, stopped. */
struct mctx {
#ifdef GREENTHREADS_FCONTEXT
	fcontext_t fctx;
#else
	ucontext_t uc;
#endif
	void *stack;       /* lowest usable byte (the guard page is below it) */
	size_t stack_size;
#ifdef GT_TSAN
	void *fiber;
#endif
};

struct task {
	struct mctx mctx;
	struct proc *proc;     /* NULL: a context-less task (the service) */
	struct cpu *cpu;       /* the worker running it, or that ran it last */
	struct cpu *next_cpu;  /* set before a yield: queue me there (NULL: where I ran) */
	bool park;             /* set before a yield: do not queue me until unpark() */
	atomic_bool parked, kick; /* see unpark() */
	bool done;
	struct task *next;     /* run-queue link */
};

struct cpu {
	struct lmm_worker *w;
	pthread_t thread;
	unsigned index;
	struct mctx sched;          /* the scheduler loop's context on this worker */
	struct task *running;
	_Atomic(struct proc *) installed; /* what switch_ctx installed here (NULL: init) */
	/* The run queue: FIFO, its owner and thieves both take from the head. */
	pthread_mutex_t lock;
	struct task *head, **tail;
	atomic_uint len;            /* written under lock; read without it to peek */
	atomic_int sleeping;        /* the futex word: 1 while it sleeps or is about to */
	long tasks_run, steals, sleeps, migrations;
	uint64_t cpu_ns;
};

static struct {
	struct lmm_domain *d;
	unsigned nworkers, nprocs, ntasks, nsteps;
	bool migrate, overflow;
	unsigned bench_ms;
	size_t page;
	atomic_bool stop;          /* --bench: tasks leave at their next step */
	struct cpu *cpus;
	atomic_long tasks_left;    /* tasks not yet exited, service included */
	struct task *service;
	atomic_uint idle;          /* workers inside idle() */
	pthread_mutex_t table_lock;
	struct proc **table;       /* the process table: holds a count reference */
	atomic_long violations, died_while_lazy, frees, teardowns;
} g;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			atomic_fetch_add(&g.violations, 1);                       \
			fprintf(stderr, "greenthreads: violation: " __VA_ARGS__); \
			fputc('\n', stderr);                                      \
		}                                                                 \
	} while (0)

static void die(const char *what)
{
	fprintf(stderr, "greenthreads: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct proc *proc_of(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(g.d) ? NULL : (struct proc *)c;
}

/*
 * Runs on the worker's thread; under the shootdown and rcu schemes maybe
 * inside a signal handler, on whatever task stack is current, so: atomics
 * only, no locks, no stdio.
 */
static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	struct cpu *cpu = lmm_worker_data(w);
	struct proc *p = proc_of(prev), *n = proc_of(next);

	if (atomic_load(&cpu->installed) != p || prev == next)
		atomic_fetch_add(&g.violations, 1);
	if (n && atomic_load(&n->magic) != PROC_LIVE)
		atomic_fetch_add(&g.violations, 1);
	if (n)
		atomic_fetch_add(&n->installed_on, 1);
	if (p)
		atomic_fetch_sub(&p->installed_on, 1);
	atomic_store(&cpu->installed, n);
}

static void teardown(struct lmm_ctx *c)
{
	struct proc *p = proc_of(c);
	CHECK(atomic_fetch_add(&p->teardowns, 1) == 0, "proc %u torn down twice", p->id);
	if (atomic_load(&p->installed_on) > 0)
		atomic_fetch_add(&g.died_while_lazy, 1); /* the interesting case */
	atomic_fetch_add(&g.teardowns, 1);
	atomic_store(&p->dead, true);
}

static void free_proc(struct lmm_ctx *c)
{
	struct proc *p = proc_of(c);
	long want = atomic_load(&p->expected_steps) + atomic_load(&p->adoptions);
	CHECK(atomic_load(&p->teardowns) == 1, "proc %u freed before teardown", p->id);
	CHECK(atomic_fetch_add(&p->frees, 1) == 0, "proc %u freed twice", p->id);
	CHECK(atomic_load(&p->installed_on) == 0, "proc %u freed while installed", p->id);
	CHECK(atomic_load(&p->steps) == want, "proc %u: %ld steps, expected %ld", p->id,
	      atomic_load(&p->steps), want);
	atomic_store(&p->magic, PROC_DEAD);
	atomic_fetch_add(&g.frees, 1);
	free(p);
}

/* --- stacks: mmap'd, with a PROT_NONE guard page below, so an overflow faults --- */

static void stack_alloc(struct mctx *m)
{
	char *base = mmap(NULL, g.page + STACK_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (base == MAP_FAILED)
		die("mmap");
	if (mprotect(base, g.page, PROT_NONE))
		die("mprotect");
	m->stack = base + g.page;
	m->stack_size = STACK_SIZE;
}

static void stack_free(struct mctx *m)
{
#ifdef GT_ASAN
	/* The task's last frames never returned: clear their redzones before reuse. */
	ASAN_UNPOISON_MEMORY_REGION(m->stack, m->stack_size);
#endif
	if (munmap((char *)m->stack - g.page, g.page + STACK_SIZE))
		die("munmap");
}

/*
 * --overflow: the service task recurses until its stack runs out. The fault
 * is taken on the worker's alternate signal stack; it must hit the guard
 * page just below the task's stack.
 */
static void overflow_fault(int sig, siginfo_t *si, void *uc)
{
	static const char ok[] = "greenthreads: overflow hit the guard page: ok\n";
	static const char bad[] = "greenthreads: violation: fault outside the guard page\n";
	char *a = si->si_addr, *lo = g.service->mctx.stack;
	bool hit = a < lo && a >= lo - g.page;
	(void)sig, (void)uc;
	if (write(2, hit ? ok : bad, hit ? sizeof(ok) - 1 : sizeof(bad) - 1) < 0)
		_exit(1);
	_exit(hit ? 0 : 1);
}

static void overflow_catch(void)
{
	/* Per worker, the fault may come on any; never freed: the handler ends the program. */
	stack_t ss = { .ss_sp = malloc(64 * 1024), .ss_size = 64 * 1024 };
	struct sigaction sa = { .sa_sigaction = overflow_fault, .sa_flags = SA_SIGINFO | SA_ONSTACK };
	if (!ss.ss_sp || sigaltstack(&ss, NULL) || sigaction(SIGSEGV, &sa, NULL))
		die("sigaltstack");
}

static unsigned recurse(unsigned n)
{
	volatile char frame[512];
	frame[0] = (char)n;
	return n == UINT32_MAX ? 0 : recurse(n + 1) + frame[0]; /* not a tail call: frames pile up */
}

/* --- task switches: fcontext or ucontext; sanitizers are told of every stack switch --- */

static void task_main(void);

/* The calling thread's own stack as an mctx to come back to (the scheduler loop). */
static void mctx_init_thread(struct mctx *m)
{
#ifdef GT_ASAN
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) ||
	    pthread_attr_getstack(&attr, &m->stack, &m->stack_size))
		die("pthread_getattr_np");
	pthread_attr_destroy(&attr);
#endif
#ifdef GT_TSAN
	m->fiber = __tsan_get_current_fiber();
#endif
	(void)m;
}

/*
 * Save where the caller stands in @from and resume @to. Returns when someone
 * switches back to @from: maybe on another thread. @last: @from never runs
 * again (its stack is about to go).
 */
static void mctx_switch(struct mctx *from, struct mctx *to, bool last)
{
#ifdef GT_ASAN
	void *fake_stack = NULL;
	__sanitizer_start_switch_fiber(last ? NULL : &fake_stack, to->stack, to->stack_size);
#endif
#ifdef GT_TSAN
	__tsan_switch_to_fiber(to->fiber, 0);
#endif
	(void)last;
#ifdef GREENTHREADS_FCONTEXT
	/* Whoever resumes us passes its own mctx and gets told where it stopped. */
	transfer_t tr = jump_fcontext(to->fctx, from);
	((struct mctx *)tr.data)->fctx = tr.fctx;
#else
	swapcontext(&from->uc, &to->uc);
#endif
#ifdef GT_ASAN
	__sanitizer_finish_switch_fiber(fake_stack, NULL, NULL);
#endif
}

/* A new task's first instructions, on its own stack. */
static void task_begin(void)
{
#ifdef GT_ASAN
	__sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
	task_main(); /* never returns */
}

#ifdef GREENTHREADS_FCONTEXT
static void task_start(transfer_t tr)
{
	((struct mctx *)tr.data)->fctx = tr.fctx; /* as in mctx_switch */
	task_begin();
}
#endif

static void mctx_init_task(struct mctx *m)
{
	stack_alloc(m);
#ifdef GREENTHREADS_FCONTEXT
	m->fctx = make_fcontext((char *)m->stack + m->stack_size, m->stack_size, task_start);
#else
	if (getcontext(&m->uc))
		die("getcontext");
	m->uc.uc_stack.ss_sp = m->stack;
	m->uc.uc_stack.ss_size = m->stack_size;
	m->uc.uc_link = NULL;
	makecontext(&m->uc, task_begin, 0);
#endif
#ifdef GT_TSAN
	m->fiber = __tsan_create_fiber(0);
#endif
}

static void mctx_destroy_task(struct mctx *m)
{
#ifdef GT_TSAN
	__tsan_destroy_fiber(m->fiber);
#endif
	stack_free(m);
}

/* --- sleeping and waking: a futex word per worker, no timeout --- */

static void futex_wait(atomic_int *word, int val)
{
	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0); /* EAGAIN, EINTR: the caller rechecks */
}

static void futex_wake(atomic_int *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/*
 * Wake @c if it sleeps. The sleeping flag, the queue lengths, g.idle and
 * g.tasks_left are all seq_cst: idle() stores its flag then reads the
 * others, a waker stores its news then reads the flag (store buffering),
 * so at least one of them sees the other's store: no lost wakeup.
 */
static bool wake(struct cpu *c)
{
	/* seq_cst: pairs with idle()'s store of 1 (see above). */
	if (!atomic_load(&c->sleeping) || !atomic_exchange(&c->sleeping, 0))
		return false;
	futex_wake(&c->sleeping);
	return true;
}

/* Wake one sleeping worker, if any, to steal. */
static void wake_any(void)
{
	/* seq_cst: pairs with idle()'s increment, before it reads the queues. */
	if (atomic_load(&g.idle) == 0)
		return;
	for (unsigned i = 0; i < g.nworkers; i++)
		if (wake(&g.cpus[i]))
			return;
}

/*
 * --- the run queues ---
 * Rule 3: a queue lock covers the list only; nothing under it calls lazymm
 * (free, which lmm_switch may run, could itself want to queue work).
 */

static unsigned rq_push(struct cpu *c, struct task *t)
{
	pthread_mutex_lock(&c->lock);
	t->next = NULL;
	*c->tail = t;
	c->tail = &t->next;
	/* seq_cst: pairs with idle()'s reads of the lengths (see wake()). */
	unsigned len = atomic_load_explicit(&c->len, memory_order_relaxed) + 1; /* under the lock */
	atomic_store(&c->len, len);
	pthread_mutex_unlock(&c->lock);
	return len;
}

static struct task *rq_pop(struct cpu *c)
{
	/* relaxed: a peek only, to skip empty queues without their lock; idle() rechecks seq_cst. */
	if (atomic_load_explicit(&c->len, memory_order_relaxed) == 0)
		return NULL;
	pthread_mutex_lock(&c->lock);
	struct task *t = c->head;
	if (t) {
		c->head = t->next;
		if (!c->head)
			c->tail = &c->head;
		/* relaxed: under the lock; an idle worker seeing the old length only rechecks. */
		atomic_store_explicit(&c->len, atomic_load_explicit(&c->len, memory_order_relaxed) - 1,
				      memory_order_relaxed);
	}
	pthread_mutex_unlock(&c->lock);
	return t;
}

/*
 * Queue @t on @c (from @self, a worker, or NULL: the spawner) and make sure
 * a worker that is awake will run it: @c itself if it slept, else a sleeper
 * that can steal it when @c has more work queued than it is about to take.
 */
static void submit(struct cpu *c, struct task *t, const struct cpu *self)
{
	unsigned len = rq_push(c, t);
	if (!wake(c) && !g.migrate && len > (c == self))
		wake_any();
}

/*
 * Nothing to run anywhere: sleep until a submit or the last exit wakes us.
 * The worker runs its idle task, which is context-less: the scheduler
 * switched to NULL after the last task, so that task's process stays
 * installed lazily while the worker sleeps.
 */
static void idle(struct cpu *cpu)
{
	/* seq_cst, all four: pair with wake() and wake_any() (store buffering, see wake()). */
	atomic_fetch_add(&g.idle, 1);
	atomic_store(&cpu->sleeping, 1);
	bool work = atomic_load(&g.tasks_left) == 0;
	for (unsigned i = 0; i < g.nworkers && !work; i++) /* the queues pick() takes from */
		work = (!g.migrate || i == cpu->index) && atomic_load(&g.cpus[i].len) != 0;
	if (!work) {
		/* Rule 2: only around the real sleep, and no lmm_switch until lmm_idle_exit. */
		lmm_idle_enter(cpu->w);
		while (atomic_load(&cpu->sleeping)) /* seq_cst: pairs with wake()'s exchange */
			futex_wait(&cpu->sleeping, 1);
		lmm_idle_exit(cpu->w);
		cpu->sleeps++;
	}
	atomic_store(&cpu->sleeping, 0); /* seq_cst: as the store above */
	atomic_fetch_sub(&g.idle, 1);    /* seq_cst: as the increment above */
}

/*
 * The next task: ours, else one stolen (not with --migrate: tasks run where
 * they were sent), else sleep; NULL once every task has exited.
 */
static struct task *pick(struct cpu *cpu)
{
	for (;;) {
		struct task *t = rq_pop(cpu);
		for (unsigned i = 1; !t && !g.migrate && i < g.nworkers; i++) {
			t = rq_pop(&g.cpus[(cpu->index + i) % g.nworkers]);
			cpu->steals += t != NULL;
		}
		if (t)
			return t;
		if (atomic_load(&g.tasks_left) == 0) /* seq_cst: pairs with the last exit's decrement */
			return NULL;
		idle(cpu);
	}
}

/* --- tasks --- */

/*
 * Rule 4: the worker a task runs on now. Tasks migrate, so this is valid
 * only until the task's next switch: call it again after every yield, and
 * never keep its result (or anything read from the worker) across one.
 * lmm_worker_self() is a call into the library, so the compiler re-reads it
 * each time; a thread-local of your own would not be: a compiler may compute
 * a thread-local's address once per function and reuse it after the task
 * has moved to another thread.
 */
static struct cpu *this_cpu(void)
{
	return lmm_worker_data(lmm_worker_self());
}

/*
 * Give the worker back; be queued on this worker (--migrate: on the next
 * one), or with @park not before an unpark().
 */
static void yield(struct task *t, bool park)
{
	struct cpu *cpu = this_cpu();
	t->next_cpu = g.migrate ? &g.cpus[(cpu->index + 1) % g.nworkers] : NULL;
	t->park = park;
	mctx_switch(&t->mctx, &cpu->sched, false);
	/* Rule 4: resumed, perhaps on another thread: cpu is stale now. */
}

/*
 * Make a parked (or parking) task runnable; from any thread (@self: the
 * caller's worker, or NULL). The kick stays set if the task is not parked
 * yet: the scheduler then finds it right after parking the task, so no
 * unpark is lost; at worst the task runs once for nothing.
 */
static void unpark(struct task *t, const struct cpu *self)
{
	/* seq_cst, both: pair with the scheduler's park (store buffering: one of us sees the other). */
	atomic_store(&t->kick, true);
	if (atomic_exchange(&t->parked, false))
		submit(t->next_cpu ? t->next_cpu : t->cpu, t, self);
}

/*
 * mmput, then tell the service if the process has no user left. The count
 * reference (mmgrab) keeps it from being freed while we look.
 */
static void put_user(struct proc *p, const struct cpu *self)
{
	lmm_grab(&p->ctx);
	lmm_put(&p->ctx);
	/* relaxed: only a teardown inside our own lmm_put matters; one elsewhere is followed by its own unpark. */
	bool dead = atomic_load_explicit(&p->dead, memory_order_relaxed);
	lmm_drop(&p->ctx);
	if (dead)
		unpark(g.service, self);
}

/* The running task's view of itself, checked after every switch (rule 4). */
static struct cpu *resume_check(struct task *t)
{
	struct cpu *cpu = this_cpu();
	CHECK(cpu->running == t && t->cpu == cpu, "a task runs on a worker that did not switch to it");
	return cpu;
}

static void process_task(struct task *t)
{
	struct proc *p = t->proc;
	long s;
	/* relaxed stop: a flag to leave by, it publishes nothing. */
	for (s = 0; g.bench_ms ? !atomic_load_explicit(&g.stop, memory_order_relaxed) : s < (long)g.nsteps; s++) {
		struct cpu *cpu = resume_check(t);
		CHECK(lmm_current(cpu->w) == &p->ctx, "task of proc %u runs without it current", p->id);
		CHECK(lmm_active(cpu->w) == &p->ctx && atomic_load(&cpu->installed) == p,
		      "task of proc %u runs on a worker with something else installed", p->id);
		CHECK(atomic_load(&p->magic) == PROC_LIVE, "task runs on a freed proc");
		if (g.bench_ms || s % 8 == 7)
			yield(t, false);
	}
	/* relaxed: counted only; free reads them after the last lmm_put's ordering. */
	atomic_fetch_add_explicit(&p->steps, s, memory_order_relaxed);
	if (g.bench_ms)
		atomic_fetch_add_explicit(&p->expected_steps, s, memory_order_relaxed);
	/* exit_mm: stop running the process (it stays installed lazily), then drop the user. */
	struct cpu *cpu = resume_check(t);
	lmm_switch(cpu->w, NULL);
	put_user(p, cpu);
}

/*
 * The service task: drops the table's reference on dead processes and
 * adopts each live one for a moment (kthread_use_mm); then parks until a
 * process dies.
 */
static void service_task(struct task *t)
{
	if (g.overflow)
		recurse(0); /* does not return */
	for (;;) {
		unsigned alive = 0;
		for (unsigned i = 0; i < g.nprocs; i++) {
			struct cpu *cpu = resume_check(t);
			pthread_mutex_lock(&g.table_lock);
			struct proc *p = g.table[i];
			if (p && atomic_load(&p->dead)) {
				g.table[i] = NULL; /* dead: drop the table's count reference */
				pthread_mutex_unlock(&g.table_lock);
				lmm_drop(&p->ctx);
				continue;
			}
			bool got = p && lmm_get_not_zero(&p->ctx);
			pthread_mutex_unlock(&g.table_lock);
			if (!p)
				continue;
			alive++;
			if (!got)
				continue;
			/* Adopt: no yield until it is given back, the task may not move while it is current. */
			lmm_switch(cpu->w, &p->ctx);
			CHECK(atomic_load(&cpu->installed) == p, "service adopted proc %u but it is not installed", p->id);
			atomic_fetch_add(&p->adoptions, 1);
			atomic_fetch_add_explicit(&p->steps, 1, memory_order_relaxed); /* relaxed: as in process_task */
			lmm_switch(cpu->w, NULL); /* unadopt: it stays installed lazily */
			put_user(p, cpu);
		}
		if (!alive)
			return;
		yield(t, true);
	}
}

static void task_main(void)
{
	struct task *t = this_cpu()->running;
	if (t->proc)
		process_task(t);
	else
		service_task(t);
	/* Back to the scheduler of whichever worker runs us now, for good. */
	t->done = true;
	mctx_switch(&t->mctx, &this_cpu()->sched, true);
	abort(); /* a finished task is never resumed */
}

static struct task *task_new(struct proc *p)
{
	struct task *t = calloc(1, sizeof(*t));
	if (!t)
		die("calloc");
	t->proc = p;
	mctx_init_task(&t->mctx);
	return t;
}

/* --- workers --- */

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
	struct cpu *cpu = arg;
	if (lmm_worker_online(g.d, cpu, &cpu->w)) {
		fprintf(stderr, "greenthreads: lmm_worker_online failed\n");
		exit(1);
	}
	mctx_init_thread(&cpu->sched);
	if (g.overflow)
		overflow_catch();
	uint64_t t0 = thread_cpu_ns();
	struct task *t;
	/* Rule 3: pick() returns with no lock held; the lmm_switch calls below take none. */
	while ((t = pick(cpu))) {
		/* Rule 1, context_switch: the task's process, or none (lazy) for the service. */
		lmm_switch(cpu->w, t->proc ? &t->proc->ctx : NULL);
		cpu->migrations += t->cpu && t->cpu != cpu;
		t->cpu = cpu;
		cpu->running = t;
		mctx_switch(&cpu->sched, &t->mctx, false);
		/*
		 * Rule 1, back in the scheduler with no task: stop running the
		 * task's process before the task can be picked elsewhere (the
		 * kernel's prev stays on this CPU until the switch is done).
		 * Left current, it would hold no reference once the task ran
		 * on and exited on another worker: a context freed while current.
		 */
		lmm_switch(cpu->w, NULL);
		cpu->running = NULL;
		cpu->tasks_run++;
		if (t->done) {
			mctx_destroy_task(&t->mctx);
			if (t != g.service) /* put_user() may unpark it still: main frees it */
				free(t);
			/* seq_cst: pairs with idle()'s and pick()'s reads (see wake()). */
			if (atomic_fetch_sub(&g.tasks_left, 1) == 1)
				for (unsigned i = 0; i < g.nworkers; i++)
					wake(&g.cpus[i]);
		} else if (t->park) {
			/* seq_cst, both: pair with unpark()'s (see there). */
			atomic_store(&t->parked, true);
			if (atomic_exchange(&t->kick, false) && atomic_exchange(&t->parked, false))
				submit(t->next_cpu ? t->next_cpu : cpu, t, cpu);
		} else {
			submit(t->next_cpu ? t->next_cpu : cpu, t, cpu);
		}
	}
	cpu->cpu_ns = thread_cpu_ns() - t0;
	lmm_worker_offline(cpu->w); /* hotplug: leaves the lazy process first */
	return NULL;
}

static unsigned arg_uint(const char *s, const char *name)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > 100000) {
		fprintf(stderr, "greenthreads: bad %s: %s\n", name, s);
		exit(2);
	}
	return (unsigned)v;
}

static unsigned usable_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	return (unsigned)CPU_COUNT(&set);
}

int main(int argc, char **argv)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_proc };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &ops, .flags = LMM_F_DEBUG };
	g.nworkers = 3;
	g.nprocs = 24;
	g.ntasks = 4;
	g.nsteps = 200;
	g.page = (size_t)sysconf(_SC_PAGESIZE);
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--migrate")) {
			g.migrate = true;
			continue;
		}
		if (!strcmp(argv[i], "--overflow")) {
			g.overflow = true;
			continue;
		}
		if (!strcmp(argv[i], "--scheme")) {
			if (lmm_scheme_parse(v, &cfg.scheme) || !lmm_scheme_available(cfg.scheme)) {
				fprintf(stderr, "greenthreads: scheme %s is not built in\n", v);
				return 2;
			}
		} else if (!strcmp(argv[i], "--workers")) {
			g.nworkers = arg_uint(v, "--workers");
		} else if (!strcmp(argv[i], "--procs")) {
			g.nprocs = arg_uint(v, "--procs");
		} else if (!strcmp(argv[i], "--tasks")) {
			g.ntasks = arg_uint(v, "--tasks");
		} else if (!strcmp(argv[i], "--steps")) {
			g.nsteps = arg_uint(v, "--steps");
		} else if (!strcmp(argv[i], "--bench")) {
			g.bench_ms = arg_uint(v, "--bench");
			cfg.flags = 0; /* time the scheduler, not the debug checks */
		} else {
			fprintf(stderr, "usage: %s [--scheme NAME] [--workers N] [--procs N] [--tasks N] [--steps N]"
				" [--migrate] [--overflow] [--bench MS]\n", argv[0]);
			return 2;
		}
		i++;
	}
	int ret = lmm_domain_create(&cfg, &g.d);
	if (ret) {
		fprintf(stderr, "greenthreads: lmm_domain_create: %s\n", strerror(-ret));
		return 1;
	}
	pthread_mutex_init(&g.table_lock, NULL);
	g.table = calloc(g.nprocs, sizeof(*g.table));
	g.cpus = calloc(g.nworkers, sizeof(*g.cpus));
	struct task **tasks = calloc((size_t)g.nprocs * g.ntasks + 1, sizeof(*tasks));
	if (!g.table || !g.cpus || !tasks)
		die("calloc");
	size_t ntasks = 0;

	/* fork + exec: every process starts with one user (the spawner) and its tasks. */
	for (unsigned i = 0; i < g.nprocs; i++) {
		struct proc *p = calloc(1, sizeof(*p));
		if (!p)
			die("calloc");
		if ((ret = lmm_ctx_init(g.d, &p->ctx))) {
			fprintf(stderr, "greenthreads: lmm_ctx_init: %s\n", strerror(-ret));
			return 1;
		}
		p->id = i;
		atomic_init(&p->magic, PROC_LIVE);
		atomic_init(&p->expected_steps, g.bench_ms ? 0 : (long)g.ntasks * g.nsteps);
		lmm_grab(&p->ctx); /* the process table's reference */
		g.table[i] = p;
		for (unsigned t = 0; t < g.ntasks; t++) {
			lmm_get(&p->ctx); /* each task is a user */
			tasks[ntasks++] = task_new(p);
		}
	}
	tasks[ntasks++] = g.service = task_new(NULL);
	atomic_init(&g.tasks_left, (long)ntasks);

	/* The workers start with nothing queued: they sleep until the submits below wake them. */
	for (unsigned i = 0; i < g.nworkers; i++) {
		struct cpu *c = &g.cpus[i];
		c->index = i;
		pthread_mutex_init(&c->lock, NULL);
		c->tail = &c->head;
	}
	for (unsigned i = 0; i < g.nworkers; i++)
		if (pthread_create(&g.cpus[i].thread, NULL, worker_main, &g.cpus[i]))
			die("pthread_create");
	for (size_t i = 0; i < ntasks; i++)
		submit(&g.cpus[i % g.nworkers], tasks[i], NULL);
	/* The spawner leaves each process: its tasks keep it alive. */
	for (unsigned i = 0; i < g.nprocs; i++)
		put_user(g.table[i], NULL); /* the table's count reference keeps the pointer valid */
	if (g.bench_ms) {
		struct timespec ts = { g.bench_ms / 1000, (long)(g.bench_ms % 1000) * 1000000 };
		nanosleep(&ts, NULL);
		atomic_store_explicit(&g.stop, true, memory_order_relaxed); /* relaxed: see process_task */
	}

	long tasks_run = 0, idle_sleeps = 0, steals = 0, migrations = 0;
	uint64_t cpu_ns = 0;
	for (unsigned i = 0; i < g.nworkers; i++) {
		struct cpu *c = &g.cpus[i];
		pthread_join(c->thread, NULL);
		tasks_run += c->tasks_run;
		idle_sleeps += c->sleeps;
		steals += c->steals;
		migrations += c->migrations;
		cpu_ns += c->cpu_ns;
	}
	/* The service returned once it had dropped the table's reference on every process. */
	ret = lmm_barrier(g.d);
	CHECK(ret == 0, "lmm_barrier: %d", ret);

	struct lmm_stats st;
	lmm_stats(g.d, &st);
	CHECK(atomic_load(&g.frees) == (long)g.nprocs, "%ld of %u processes freed", atomic_load(&g.frees), g.nprocs);
	CHECK(st.contexts_live == 0, "%llu contexts still live", (unsigned long long)st.contexts_live);
	/* --migrate: every slice but a task's first ran on another worker than the one before. */
	CHECK(!g.migrate || g.nworkers == 1 || migrations == tasks_run - (long)ntasks,
	      "--migrate: %ld migrations in %ld slices of %zu tasks", migrations, tasks_run, ntasks);
	printf("greenthreads (%s, %s): %u workers ran %ld task slices of %u processes x %u tasks\n",
	       lmm_scheme_name(cfg.scheme), GT_SWITCH, g.nworkers, tasks_run, g.nprocs, g.ntasks);
	printf("  %llu switches: %llu lazy enters, %llu lazy hits, %llu installs, %llu unlazies\n",
	       (unsigned long long)st.switches, (unsigned long long)st.lazy_enters,
	       (unsigned long long)st.lazy_hits, (unsigned long long)st.installs,
	       (unsigned long long)st.unlazies);
	printf("  %ld processes died while a worker held them lazily; %ld torn down, %ld freed\n",
	       atomic_load(&g.died_while_lazy), atomic_load(&g.teardowns), atomic_load(&g.frees));
	printf("  %ld steals, %ld migrations, %ld idle sleeps\n", steals, migrations, idle_sleeps);
	for (unsigned i = 0; i < g.nworkers; i++)
		pthread_mutex_destroy(&g.cpus[i].lock); /* only now: thieves lock every queue */
	free(tasks);
	free(g.service);
	free(g.cpus);
	free(g.table);
	ret = lmm_domain_destroy(g.d);
	CHECK(ret == 0, "lmm_domain_destroy: %d", ret);
	long v = atomic_load(&g.violations);
	printf("%s: %ld violations\n", v ? "FAIL" : "ok", v);
	if (g.bench_ms && cpu_ns) {
		unsigned par = usable_cpus() < g.nworkers ? usable_cpus() : g.nworkers;
		printf("switches/s %.4g\n", (double)tasks_run * 1e9 / (double)cpu_ns * par);
	}
	return v ? 1 : 0;
}
