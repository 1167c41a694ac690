/* SPDX-License-Identifier: MIT */
/*
 * An M:N green-thread scheduler on lazymm.
 *
 * Worker pthreads (the "CPUs") run green tasks (ucontext, own stacks) from
 * one run queue. Every task belongs to a process, a context with its own
 * data; between tasks the scheduler loop itself runs context-less, so the
 * last process stays installed lazily and the next task of the same process
 * is a lazy hit. Processes die when their last task exits, usually while some
 * worker still holds them lazily: teardown runs at once, free only once no
 * worker has them installed. An idle loop sleeps between lmm_idle_enter and
 * lmm_idle_exit. A service task adopts process contexts for a while
 * (lmm_switch(w, ctx) ... lmm_switch(w, NULL): the kernel's kthread_use_mm).
 *
 * It checks its own invariants and exits non-zero on any violation:
 *   - a task runs only with its own process current and installed;
 *   - switch_ctx is called with what the worker really had installed;
 *   - free runs once, after teardown, on a process no worker has installed;
 *   - every process is freed, and its data adds up.
 *
 *   cc -O2 greenthreads.c $(pkg-config --cflags --libs lazymm) -o greenthreads
 *   ./greenthreads --scheme hazard [--workers 3] [--procs 24] [--tasks 4] [--steps 200]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <lazymm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#define STACK_SIZE (128 * 1024)
#define PROC_LIVE 0x50524f43u /* "PROC" */
#define PROC_DEAD 0xdeadbeefu

struct proc {
	struct lmm_ctx ctx; /* first: a struct lmm_ctx * is a struct proc * */
	unsigned id;
	atomic_uint magic;
	atomic_int installed_on; /* workers whose switch_ctx installed it and has not left it */
	atomic_int teardowns, frees;
	atomic_long steps;       /* written by its tasks, only while it is current */
	atomic_long adoptions;   /* by the service task */
	long expected_steps;
	atomic_bool dead;        /* teardown ran: the service drops the table's reference */
};

struct task {
	ucontext_t uc;
	struct proc *proc; /* NULL: a context-less task (the service) */
	void *stack;
	bool done;
	struct task *next;
};

struct cpu {
	struct lmm_worker *w;
	pthread_t thread;
	unsigned index;
	ucontext_t sched;          /* the scheduler loop's context on this worker */
	struct task *running;
	_Atomic(struct proc *) installed; /* what switch_ctx installed here (NULL: init) */
	long tasks_run, idle_sleeps;
};

static struct {
	struct lmm_domain *d;
	unsigned nworkers, nprocs, ntasks, nsteps;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct task *head, **tail;
	long tasks_left;           /* tasks not yet exited, service included */
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

static struct proc *proc_of(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(g.d) ? NULL : (struct proc *)c;
}

/*
 * Runs on the worker's thread; under the shootdown scheme maybe inside a
 * signal handler, so: atomics only, no locks, no stdio.
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
	CHECK(atomic_load(&p->teardowns) == 1, "proc %u freed before teardown", p->id);
	CHECK(atomic_fetch_add(&p->frees, 1) == 0, "proc %u freed twice", p->id);
	CHECK(atomic_load(&p->installed_on) == 0, "proc %u freed while installed", p->id);
	CHECK(atomic_load(&p->steps) == p->expected_steps + atomic_load(&p->adoptions),
	      "proc %u: %ld steps, expected %ld", p->id, atomic_load(&p->steps),
	      p->expected_steps + atomic_load(&p->adoptions));
	atomic_store(&p->magic, PROC_DEAD);
	atomic_fetch_add(&g.frees, 1);
	free(p);
}

/* --- the run queue --- */

static void enqueue(struct task *t)
{
	pthread_mutex_lock(&g.lock);
	t->next = NULL;
	*g.tail = t;
	g.tail = &t->next;
	pthread_cond_signal(&g.wake);
	pthread_mutex_unlock(&g.lock);
}

/* The next task, or NULL once every task has exited; idles meanwhile. */
static struct task *pick(struct cpu *cpu)
{
	struct timespec ts;
	pthread_mutex_lock(&g.lock);
	while (!g.head && g.tasks_left > 0) {
		pthread_mutex_unlock(&g.lock);
		/* Nothing to run: a context-less idle task, the last process stays lazy. */
		lmm_switch(cpu->w, NULL);
		lmm_idle_enter(cpu->w);
		pthread_mutex_lock(&g.lock);
		if (!g.head && g.tasks_left > 0) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&g.wake, &g.lock, &ts);
			cpu->idle_sleeps++;
		}
		pthread_mutex_unlock(&g.lock);
		lmm_idle_exit(cpu->w);
		pthread_mutex_lock(&g.lock);
	}
	struct task *t = g.head;
	if (t) {
		g.head = t->next;
		if (!g.head)
			g.tail = &g.head;
	}
	pthread_mutex_unlock(&g.lock);
	return t;
}

/* The worker a task runs on now: tasks migrate, so never keep it across a yield. */
static struct cpu *this_cpu(void)
{
	return lmm_worker_data(lmm_worker_self());
}

static void yield(void)
{
	struct cpu *cpu = this_cpu();
	swapcontext(&cpu->running->uc, &cpu->sched);
}

/* --- tasks --- */

static void process_task(void)
{
	for (unsigned s = 0; s < g.nsteps; s++) {
		struct cpu *cpu = this_cpu();
		struct proc *p = cpu->running->proc;
		CHECK(lmm_current(cpu->w) == &p->ctx, "task of proc %u runs without it current", p->id);
		CHECK(lmm_active(cpu->w) == &p->ctx && atomic_load(&cpu->installed) == p,
		      "task of proc %u runs on a worker with something else installed", p->id);
		CHECK(atomic_load(&p->magic) == PROC_LIVE, "task runs on a freed proc");
		atomic_fetch_add_explicit(&p->steps, 1, memory_order_relaxed);
		if (s % 8 == 7)
			yield();
	}
	/* exit_mm: stop running the process (it stays installed lazily), then drop the user. */
	struct cpu *cpu = this_cpu();
	struct proc *p = cpu->running->proc;
	lmm_switch(cpu->w, NULL);
	lmm_put(&p->ctx);
	cpu->running->done = true;
}

/* The service task: adopts each live process for a moment (kthread_use_mm). */
static void service_task(void)
{
	unsigned alive;
	do {
		alive = 0;
		for (unsigned i = 0; i < g.nprocs; i++) {
			struct cpu *cpu = this_cpu();
			pthread_mutex_lock(&g.lock);
			struct proc *p = g.table[i];
			if (p && atomic_load(&p->dead)) {
				g.table[i] = NULL; /* dead: drop the table's count reference */
				pthread_mutex_unlock(&g.lock);
				lmm_drop(&p->ctx);
				continue;
			}
			bool got = p && lmm_get_not_zero(&p->ctx);
			pthread_mutex_unlock(&g.lock);
			if (!p)
				continue;
			alive++;
			if (!got)
				continue;
			lmm_switch(cpu->w, &p->ctx); /* adopt: install it, run in it */
			CHECK(atomic_load(&cpu->installed) == p, "service adopted proc %u but it is not installed", p->id);
			atomic_fetch_add(&p->adoptions, 1);
			atomic_fetch_add_explicit(&p->steps, 1, memory_order_relaxed);
			lmm_switch(cpu->w, NULL); /* unadopt: it stays installed lazily */
			lmm_put(&p->ctx);
		}
		yield();
	} while (alive);
	this_cpu()->running->done = true;
}

static void task_entry(void)
{
	struct task *t = this_cpu()->running;
	if (t->proc)
		process_task();
	else
		service_task();
	/* Back to the scheduler of whichever worker runs us now; never returns. */
	setcontext(&this_cpu()->sched);
}

static struct task *task_new(struct proc *p)
{
	struct task *t = calloc(1, sizeof(*t));
	if (!t || !(t->stack = malloc(STACK_SIZE)) || getcontext(&t->uc)) {
		fprintf(stderr, "greenthreads: out of memory\n");
		exit(1);
	}
	t->proc = p;
	t->uc.uc_stack.ss_sp = t->stack;
	t->uc.uc_stack.ss_size = STACK_SIZE;
	t->uc.uc_link = NULL;
	makecontext(&t->uc, task_entry, 0);
	return t;
}

/* --- workers --- */

static void *worker_main(void *arg)
{
	struct cpu *cpu = arg;
	if (lmm_worker_online(g.d, cpu, &cpu->w)) {
		fprintf(stderr, "greenthreads: lmm_worker_online failed\n");
		exit(1);
	}
	struct task *t;
	while ((t = pick(cpu))) {
		/* context_switch: the task's process, or none (lazy) for the service. */
		lmm_switch(cpu->w, t->proc ? &t->proc->ctx : NULL);
		cpu->running = t;
		swapcontext(&cpu->sched, &t->uc);
		/*
		 * Back in the scheduler, with no task: stop running the task's
		 * process before the task can be picked elsewhere (the kernel's
		 * prev stays on this CPU until the switch is done). Left current,
		 * it would hold no reference once the task ran on and exited
		 * on another worker: a context freed while current.
		 */
		lmm_switch(cpu->w, NULL);
		cpu->running = NULL;
		cpu->tasks_run++;
		if (t->done) {
			free(t->stack);
			free(t);
			pthread_mutex_lock(&g.lock);
			if (--g.tasks_left == 0)
				pthread_cond_broadcast(&g.wake);
			pthread_mutex_unlock(&g.lock);
		} else {
			enqueue(t);
		}
	}
	lmm_switch(cpu->w, NULL);
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

int main(int argc, char **argv)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_proc };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &ops, .flags = LMM_F_DEBUG };
	g.nworkers = 3;
	g.nprocs = 24;
	g.ntasks = 4;
	g.nsteps = 200;
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
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
		} else {
			fprintf(stderr, "usage: %s [--scheme NAME] [--workers N] [--procs N] [--tasks N] [--steps N]\n",
				argv[0]);
			return 2;
		}
	}
	int ret = lmm_domain_create(&cfg, &g.d);
	if (ret) {
		fprintf(stderr, "greenthreads: lmm_domain_create: %s\n", strerror(-ret));
		return 1;
	}
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.wake, NULL);
	g.tail = &g.head;
	g.table = calloc(g.nprocs, sizeof(*g.table));
	if (!g.table)
		return 1;

	/* fork + exec: every process starts with one user (the spawner) and its tasks. */
	for (unsigned i = 0; i < g.nprocs; i++) {
		struct proc *p = calloc(1, sizeof(*p));
		if (!p || lmm_ctx_init(g.d, &p->ctx))
			return 1;
		p->id = i;
		atomic_init(&p->magic, PROC_LIVE);
		p->expected_steps = (long)g.ntasks * g.nsteps;
		lmm_grab(&p->ctx); /* the process table's reference */
		g.table[i] = p;
		for (unsigned t = 0; t < g.ntasks; t++) {
			lmm_get(&p->ctx); /* each task is a user */
			enqueue(task_new(p));
			g.tasks_left++;
		}
		lmm_put(&p->ctx); /* the spawner leaves: the tasks keep it alive */
	}
	enqueue(task_new(NULL));
	g.tasks_left++;

	struct cpu *cpus = calloc(g.nworkers, sizeof(*cpus));
	if (!cpus)
		return 1;
	for (unsigned i = 0; i < g.nworkers; i++) {
		cpus[i].index = i;
		if (pthread_create(&cpus[i].thread, NULL, worker_main, &cpus[i]))
			return 1;
	}
	long tasks_run = 0, idle = 0;
	for (unsigned i = 0; i < g.nworkers; i++) {
		pthread_join(cpus[i].thread, NULL);
		tasks_run += cpus[i].tasks_run;
		idle += cpus[i].idle_sleeps;
	}
	/* The table's leftovers (the service may have stopped before seeing them dead). */
	for (unsigned i = 0; i < g.nprocs; i++)
		if (g.table[i])
			lmm_drop(&g.table[i]->ctx);
	ret = lmm_barrier(g.d);
	CHECK(ret == 0, "lmm_barrier: %d", ret);

	struct lmm_stats st;
	lmm_stats(g.d, &st);
	CHECK(atomic_load(&g.frees) == (long)g.nprocs, "%ld of %u processes freed", atomic_load(&g.frees), g.nprocs);
	CHECK(st.contexts_live == 0, "%llu contexts still live", (unsigned long long)st.contexts_live);
	printf("greenthreads (%s): %u workers ran %ld task slices of %u processes x %u tasks\n",
	       lmm_scheme_name(cfg.scheme), g.nworkers, tasks_run, g.nprocs, g.ntasks);
	printf("  %llu switches: %llu lazy enters, %llu lazy hits, %llu installs, %llu unlazies\n",
	       (unsigned long long)st.switches, (unsigned long long)st.lazy_enters,
	       (unsigned long long)st.lazy_hits, (unsigned long long)st.installs,
	       (unsigned long long)st.unlazies);
	printf("  %ld processes died while a worker held them lazily; %ld torn down, %ld freed; %ld idle sleeps\n",
	       atomic_load(&g.died_while_lazy), atomic_load(&g.teardowns), atomic_load(&g.frees), idle);
	free(cpus);
	free(g.table);
	ret = lmm_domain_destroy(g.d);
	CHECK(ret == 0, "lmm_domain_destroy: %d", ret);
	long v = atomic_load(&g.violations);
	printf("%s: %ld violations\n", v ? "FAIL" : "ok", v);
	return v ? 1 : 0;
}
