/* SPDX-License-Identifier: MIT */
/*
 * lmm-torture: a long-running randomized torture test for any lazymm scheme,
 * in the spirit of rcutorture. Plain C (no Criterion) so that it runs under
 * TSan and valgrind as well as ASan/UBSan.
 *
 *   lmm-torture [--scheme NAME|all] [--seconds S] [--workers N]
 *               [--contexts N] [--seed N] [--round S] [--quiet]
 *
 * The run is cut into rounds (--round seconds each, default 2): every round
 * makes a fresh domain whose flags (none, LMM_F_DEFER_FREE, LMM_F_DEBUG,
 * both) come from the seed, then tears it down and checks the books.
 *
 * Every context carries a canary that the free hook poisons; freed contexts
 * sit in a quarantine ring before their memory really goes back to malloc,
 * so a use after free reads the poison even without a sanitizer. Checked:
 * every task's context, the installed (maybe lazy) context whenever the
 * worker is awake, both arguments of every switch_ctx, teardown and free
 * exactly once, free only after teardown and never while a worker has the
 * context installed (the hooks' own count), and at the end of a round that
 * every context made was freed. Any violation prints what and aborts.
 *
 * The report: operations by kind, frees, and the histogram of how long a
 * context waited between its last put (teardown) and its free.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sanitizer.h"

#include "lazymm.h"
#include "schemes.h"

#define CANARY_LIVE 0x4c495645u
#define CANARY_DEAD 0xdeadbeefu
#define QUARANTINE 512
#define MAX_WORKERS 64
#define MAX_SLOTS 256
#define AGE_BUCKETS 24 /* log2 microseconds: <1us, <2us, ... >=2^22us (~4s) */

struct tc {
	struct lmm_ctx ctx;
	atomic_uint canary;
	atomic_int teardowns;
	atomic_int frees;
	atomic_int installed;         /* workers that have it installed, per switch_ctx */
	struct lmm_ctx *drop_on_free; /* a count reference on another context */
	atomic_ullong torn_ns;        /* when users reached 0 */
};

#define TC(c) ((struct tc *)(void *)((char *)(c) - offsetof(struct tc, ctx)))

/* ---------- violations: async-signal-safe, since switch_ctx may be a handler ---------- */

static void violation(const char *what)
{
	static const char head[] = "lmm-torture: VIOLATION: ";
	ssize_t r = write(2, head, sizeof(head) - 1);
	r = write(2, what, strlen(what));
	r = write(2, "\n", 1);
	(void)r;
	abort();
}

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void nap_ns(long ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };
	nanosleep(&ts, NULL);
}

static unsigned rnd(unsigned *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* ---------- counters ---------- */

enum op {
	OP_TASK,
	OP_TASK_TO_TASK,
	OP_REPLACE,
	OP_SERVICE,
	OP_UNLAZY,
	OP_IDLE,
	OP_LAZY_SLEEP,
	OP_OFFLINE_ONLINE,
	OP_BARRIER,
	OP_CONTEXTLESS,
	OP_EXIT_NO_OFFLINE,
	OP_EXIT_WITH_CURRENT,
	OP_OUTSIDE_REPLACE,
	OP_DROP_ON_FREE,
	OP_BLOCKED_SIGNAL,
	OP_CANCELLED_PUT,
	OP_FORK,
	OP_NR
};

static const char *const op_names[OP_NR] = {
	[OP_TASK] = "task (switch in, lazy, put)",
	[OP_TASK_TO_TASK] = "task-to-task switch",
	[OP_REPLACE] = "replace (maybe last put) on a worker",
	[OP_SERVICE] = "service worker grab/switch/drop",
	[OP_UNLAZY] = "lmm_unlazy",
	[OP_IDLE] = "idle with lmm_idle_enter",
	[OP_LAZY_SLEEP] = "lazy sleep without lmm_idle_enter",
	[OP_OFFLINE_ONLINE] = "offline + online",
	[OP_BARRIER] = "lmm_barrier",
	[OP_CONTEXTLESS] = "context-less task",
	[OP_EXIT_NO_OFFLINE] = "thread exit without offline",
	[OP_EXIT_WITH_CURRENT] = "thread exit with a current context",
	[OP_OUTSIDE_REPLACE] = "replace (maybe last put) off-worker",
	[OP_DROP_ON_FREE] = "contexts whose free drops another",
	[OP_BLOCKED_SIGNAL] = "lazy sleep, signal blocked",
	[OP_CANCELLED_PUT] = "off-worker replace, thread cancelled",
	[OP_FORK] = "fork; the child runs a domain",
};

static atomic_ullong op_count[OP_NR];
static atomic_ullong age_hist[AGE_BUCKETS];
static atomic_ullong total_frees, total_created, total_rounds;
static atomic_ullong total_signals, total_unanswered; /* lost signals show up here */

static void count_op(enum op o)
{
	/* Relaxed: statistics. */
	atomic_fetch_add_explicit(&op_count[o], 1, memory_order_relaxed);
}

/* ---------- quarantine: freed contexts keep their poison for a while ---------- */

static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tc *quarantine[QUARANTINE];
static unsigned quarantine_next;

static void quarantine_add(struct tc *t)
{
	pthread_mutex_lock(&quarantine_lock);
	struct tc *evict = quarantine[quarantine_next];
	quarantine[quarantine_next] = t;
	quarantine_next = (quarantine_next + 1) % QUARANTINE;
	pthread_mutex_unlock(&quarantine_lock);
	if (evict) {
		if (atomic_load(&evict->canary) != CANARY_DEAD)
			violation("quarantined context written after its free");
		free(evict);
	}
}

static void quarantine_flush(void)
{
	pthread_mutex_lock(&quarantine_lock);
	for (unsigned i = 0; i < QUARANTINE; i++) {
		free(quarantine[i]);
		quarantine[i] = NULL;
	}
	pthread_mutex_unlock(&quarantine_lock);
}

/* ---------- the application's hooks ---------- */

/* What this thread's worker has installed, as switch_ctx saw it (NULL: unknown). */
static __thread struct lmm_ctx *seen_installed;

static bool is_init(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(lmm_ctx_domain(c));
}

static void t_switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w;
	if (!prev || !next)
		violation("switch_ctx: NULL argument");
	if (prev == next)
		violation("switch_ctx: prev == next");
	if (seen_installed && prev != seen_installed)
		violation("switch_ctx: prev is not the installed context");
	if (!is_init(next) && atomic_load(&TC(next)->canary) != CANARY_LIVE)
		violation("switch_ctx: installing a freed context");
	if (!is_init(prev) && atomic_load(&TC(prev)->canary) != CANARY_LIVE)
		violation("switch_ctx: leaving a context that was freed while installed");
	if (!is_init(next))
		atomic_fetch_add(&TC(next)->installed, 1);
	if (!is_init(prev))
		atomic_fetch_sub(&TC(prev)->installed, 1);
	seen_installed = next;
}

static void t_teardown(struct lmm_ctx *c)
{
	struct tc *t = TC(c);
	if (atomic_load(&t->canary) != CANARY_LIVE)
		violation("teardown of a freed context");
	if (atomic_fetch_add(&t->teardowns, 1) != 0)
		violation("teardown ran twice");
	atomic_store(&t->torn_ns, now_ns());
}

static unsigned age_bucket(unsigned long long ns)
{
	unsigned long long us = ns / 1000;
	unsigned b = 0;
	while (us && b < AGE_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	return b;
}

static void t_free(struct lmm_ctx *c)
{
	struct tc *t = TC(c);
	unsigned long long now = now_ns();
	if (atomic_load(&t->teardowns) != 1)
		violation("free before teardown");
	if (atomic_fetch_add(&t->frees, 1) != 0)
		violation("free ran twice");
	if (atomic_load(&t->installed) != 0)
		violation("free while a worker has the context installed");
	if (atomic_exchange(&t->canary, CANARY_DEAD) != CANARY_LIVE)
		violation("free of a poisoned context");
	unsigned long long torn = atomic_load(&t->torn_ns);
	atomic_fetch_add_explicit(&age_hist[age_bucket(now > torn ? now - torn : 0)], 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&total_frees, 1, memory_order_relaxed);
	struct lmm_ctx *other = t->drop_on_free;
	quarantine_add(t);
	/* Allowed by the contract: free may drop other contexts (maybe their last reference). */
	if (other)
		lmm_drop(other);
}

static const struct lmm_ops torture_ops = {
	.switch_ctx = t_switch_ctx,
	.teardown = t_teardown,
	.free = t_free,
};

/* ---------- one round ---------- */

struct round {
	struct lmm_domain *d;
	unsigned nslots;
	pthread_mutex_t lock[MAX_SLOTS];
	struct tc *slot[MAX_SLOTS]; /* each slot holds a users reference */
	atomic_ullong created;
	atomic_bool stop;
	unsigned flags;
};

static void check_live(struct tc *t, const char *what)
{
	if (atomic_load(&t->canary) != CANARY_LIVE)
		violation(what);
}

/*
 * The installed context is alive whenever the worker is awake. A shootdown
 * signal may switch this thread to init between our two reads of active:
 * poison only counts if the context is still installed after we saw it.
 */
static void check_active(struct lmm_worker *w)
{
	struct lmm_ctx *a = lmm_active(w);
	if (is_init(a))
		return;
	if (atomic_load(&TC(a)->canary) != CANARY_LIVE && lmm_active(w) == a)
		violation("the installed (lazy) context was freed under its worker");
}

static struct tc *take(struct round *r, unsigned i, bool users)
{
	pthread_mutex_lock(&r->lock[i]);
	struct tc *t = r->slot[i];
	if (users)
		lmm_get(&t->ctx);
	else
		lmm_grab(&t->ctx);
	pthread_mutex_unlock(&r->lock[i]);
	return t;
}

static struct tc *new_ctx(struct round *r, unsigned *seed)
{
	struct tc *t = calloc(1, sizeof(*t));
	if (!t)
		violation("out of memory");
	atomic_init(&t->canary, CANARY_LIVE);
	int ret = lmm_ctx_init(r->d, &t->ctx);
	if (ret)
		violation("lmm_ctx_init failed");
	atomic_fetch_add(&r->created, 1);
	if (seed && r->nslots > 1 && rnd(seed) % 4 == 0) {
		/* Its free will drop another context: chains of frees from inside free. */
		struct tc *o = take(r, rnd(seed) % r->nslots, false);
		t->drop_on_free = &o->ctx;
		count_op(OP_DROP_ON_FREE);
	}
	return t;
}

static void replace(struct round *r, unsigned i, unsigned *seed)
{
	struct tc *n = new_ctx(r, seed);
	pthread_mutex_lock(&r->lock[i]);
	struct tc *old = r->slot[i];
	r->slot[i] = n;
	pthread_mutex_unlock(&r->lock[i]);
	lmm_put(&old->ctx);
}

/*
 * --no-fork: no fork phase. Under valgrind a child's exit status is
 * valgrind's verdict on memory that the parent's other threads own. Also
 * under qemu-user (LMM_TEST_QEMU, set by .ci/run): a fork while other
 * emulated threads run can leave the child's translator waiting for a
 * lock another emulator thread held at the fork (glib's slice allocator,
 * under tb_gen_code), and the child hangs inside qemu before it runs a
 * line of ours.
 */
static bool no_fork;

/* The child's hooks: the torture's own take locks another thread may have held at fork. */
static int child_frees;
static void child_switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w, (void)prev, (void)next;
}
static void child_teardown(struct lmm_ctx *c) { (void)c; }
static void child_free(struct lmm_ctx *c) { (void)c; child_frees++; }
static const struct lmm_ops child_ops = { child_switch_ctx, child_teardown, child_free };

/* A child of a fork: a domain of its own, one context through it, all torn down. */
static int fork_child(void)
{
	alarm(20); /* a lock of the library left held in the child would hang it */
	if (lmm_worker_self())
		return 3; /* the forking thread's worker is not the child's */
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &child_ops };
	struct lmm_domain *d = NULL;
	struct lmm_worker *w = NULL;
	static struct lmm_ctx ctx;
	if (lmm_domain_create(&cfg, &d) || lmm_worker_online(d, NULL, &w) || lmm_ctx_init(d, &ctx))
		return 4;
	lmm_switch(w, &ctx);
	lmm_switch(w, NULL);
	lmm_put(&ctx);
	lmm_unlazy(w);
	if (lmm_barrier(d) || lmm_worker_offline(w) || lmm_domain_destroy(d) || child_frees != 1)
		return 5;
	return 0;
}

static void fork_and_wait(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		violation("fork");
	if (pid == 0)
		_exit(fork_child());
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "lmm-torture: fork child status %#x\n", status);
		violation("a child of fork could not run a domain of its own");
	}
}

#ifndef LMM_TEST_TSAN /* pthread_cancel under TSan: google/sanitizers#646 */
struct cancelled {
	struct round *r;
	unsigned seed;
	atomic_bool done;
};

/* A last put from a thread that is cancelled meanwhile: the put must still complete. */
static void *cancelled_main(void *arg)
{
	struct cancelled *c = arg;
	replace(c->r, rnd(&c->seed) % c->r->nslots, &c->seed);
	atomic_store(&c->done, true);
	for (;;)
		pause(); /* cancelled here at the latest */
	return NULL;
}

static void cancelled_put(struct round *r, unsigned *seed)
{
	struct cancelled c = { .r = r, .seed = rnd(seed) | 1 };
	pthread_t t;
	if (pthread_create(&t, NULL, cancelled_main, &c))
		violation("pthread_create");
	nap_ns((long)(rnd(seed) % 200000));
	pthread_cancel(t);
	void *res;
	pthread_join(t, &res);
	if (!atomic_load(&c.done))
		violation("a put was stopped half-way by a cancellation");
}
#endif

struct runner {
	struct round *r;
	unsigned seed;
	struct tc *leftover; /* a task reference the exiting worker thread left us */
};

static struct lmm_worker *online(struct round *r)
{
	struct lmm_worker *w = NULL;
	int ret = lmm_worker_online(r->d, NULL, &w);
	if (ret) {
		fprintf(stderr, "lmm-torture: lmm_worker_online: %s\n", strerror(-ret));
		violation("lmm_worker_online failed");
	}
	seen_installed = lmm_init_ctx(r->d);
	return w;
}

static void *worker_main(void *arg)
{
	struct runner *ru = arg;
	struct round *r = ru->r;
	struct lmm_worker *w = online(r);
	unsigned s = ru->seed;
	int ret;

	for (int op = 0; op < 5000 && !atomic_load(&r->stop); op++) {
		unsigned x = rnd(&s) % 100;
		unsigned i = rnd(&s) % r->nslots;
		check_active(w);
		if (x < 40) {
			struct tc *t = take(r, i, true);
			lmm_switch(w, &t->ctx);
			check_live(t, "running a task of a freed context");
			count_op(OP_TASK);
			if (rnd(&s) % 4 == 0) {
				struct tc *u = take(r, rnd(&s) % r->nslots, true);
				lmm_switch(w, &u->ctx);
				check_live(u, "running a task of a freed context");
				lmm_put(&t->ctx);
				t = u;
				count_op(OP_TASK_TO_TASK);
			}
			lmm_switch(w, NULL);
			lmm_put(&t->ctx); /* may leave this worker the last, lazy holder */
			check_active(w);
		} else if (x < 52) {
			replace(r, i, &s);
			count_op(OP_REPLACE);
		} else if (x < 60) {
			struct tc *t = take(r, i, false);
			lmm_switch(w, &t->ctx);
			check_live(t, "service worker on a freed context");
			lmm_switch(w, NULL);
			lmm_drop(&t->ctx);
			count_op(OP_SERVICE);
		} else if (x < 67) {
			lmm_unlazy(w);
			count_op(OP_UNLAZY);
		} else if (x < 75) {
			lmm_idle_enter(w);
			nap_ns(10000 + rnd(&s) % 40000);
			lmm_idle_exit(w);
			count_op(OP_IDLE);
		} else if (x < 79) {
			/* A lazy worker that sleeps without telling the library. */
			nap_ns(10000 + rnd(&s) % 200000);
			count_op(OP_LAZY_SLEEP);
		} else if (x < 80) {
			/* The same with the signal blocked: frees that need us wait, none is lost. */
			sigset_t set;
			sigemptyset(&set);
			sigaddset(&set, lmm_default_signo());
			pthread_sigmask(SIG_BLOCK, &set, NULL);
			nap_ns(10000 + rnd(&s) % 200000);
			pthread_sigmask(SIG_UNBLOCK, &set, NULL);
			count_op(OP_BLOCKED_SIGNAL);
		} else if (x < 83) {
			ret = lmm_worker_offline(w);
			if (ret)
				violation("lmm_worker_offline failed");
			seen_installed = NULL;
			w = online(r);
			count_op(OP_OFFLINE_ONLINE);
		} else if (x < 84 && !no_fork && rnd(&s) % 8 == 0) {
			fork_and_wait();
			count_op(OP_FORK);
		} else if (x < 85) {
			ret = lmm_barrier(r->d);
			if (ret) {
				fprintf(stderr, "lmm-torture: lmm_barrier: %s\n", strerror(-ret));
				violation("lmm_barrier failed on a worker");
			}
			count_op(OP_BARRIER);
		} else {
			lmm_switch(w, NULL);
			count_op(OP_CONTEXTLESS);
		}
	}
	switch (rnd(&s) % 4) {
	case 0:
		/* Exit while a task's context is current: the library goes lazy and offline. */
		ru->leftover = take(r, rnd(&s) % r->nslots, true);
		lmm_switch(w, &ru->leftover->ctx);
		count_op(OP_EXIT_WITH_CURRENT);
		break;
	case 1:
		lmm_switch(w, NULL);
		count_op(OP_EXIT_NO_OFFLINE);
		break;
	default:
		lmm_switch(w, NULL);
		if (lmm_worker_offline(w))
			violation("final lmm_worker_offline failed");
	}
	ru->seed = s;
	return NULL;
}

static void *runner_main(void *arg)
{
	struct runner *ru = arg;
	while (!atomic_load(&ru->r->stop)) {
		pthread_t t;
		ru->leftover = NULL;
		if (pthread_create(&t, NULL, worker_main, ru))
			violation("pthread_create");
		pthread_join(t, NULL);
		if (ru->leftover)
			lmm_put(&ru->leftover->ctx);
	}
	return NULL;
}

static const unsigned round_flags[4] = { 0, LMM_F_DEFER_FREE, LMM_F_DEBUG,
					 LMM_F_DEFER_FREE | LMM_F_DEBUG };

static void run_round(enum lmm_scheme scheme, unsigned flags, double secs, unsigned nworkers,
		      unsigned nslots, unsigned seed)
{
	static struct round r; /* big: keep it off the stack */
	memset(&r, 0, sizeof(r));
	r.nslots = nslots;
	r.flags = flags;
	struct lmm_config cfg = { .scheme = scheme, .ops = &torture_ops, .flags = flags,
				  .max_workers = nworkers + 2, .timeout_ms = 120000 };
	int ret = lmm_domain_create(&cfg, &r.d);
	if (ret) {
		fprintf(stderr, "lmm-torture: lmm_domain_create(%s): %s\n", lmm_scheme_name(scheme),
			strerror(-ret));
		exit(2);
	}
	for (unsigned i = 0; i < nslots; i++) {
		pthread_mutex_init(&r.lock[i], NULL);
		r.slot[i] = new_ctx(&r, NULL);
	}
	struct runner ru[MAX_WORKERS];
	pthread_t th[MAX_WORKERS];
	for (unsigned i = 0; i < nworkers; i++) {
		ru[i] = (struct runner){ .r = &r, .seed = seed * 2654435761u + i * 40503u + 1 };
		if (pthread_create(&th[i], NULL, runner_main, &ru[i]))
			violation("pthread_create");
	}
	/* The main thread is no worker: its replaces are last puts from outside. */
	unsigned s = seed | 1;
	unsigned long long end = now_ns() + (unsigned long long)(secs * 1e9);
	while (now_ns() < end) {
		replace(&r, rnd(&s) % nslots, &s);
		count_op(OP_OUTSIDE_REPLACE);
		if (rnd(&s) % 64 == 0) {
			ret = lmm_barrier(r.d);
			if (ret) {
				fprintf(stderr, "lmm-torture: lmm_barrier: %s\n", strerror(-ret));
				violation("lmm_barrier failed off-worker");
			}
			count_op(OP_BARRIER);
		}
#ifndef LMM_TEST_TSAN
		if (rnd(&s) % 16 == 0) {
			cancelled_put(&r, &s);
			count_op(OP_CANCELLED_PUT);
		}
#endif
		nap_ns(50000);
	}
	atomic_store(&r.stop, true);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < nslots; i++)
		lmm_put(&r.slot[i]->ctx);
	ret = lmm_barrier(r.d);
	if (ret)
		violation("final lmm_barrier failed");
	struct lmm_stats st;
	lmm_stats(r.d, &st);
	unsigned long long created = atomic_load(&r.created);
	if (st.frees != created || st.teardowns != created || st.contexts_live || st.frees_pending ||
	    st.workers_online) {
		fprintf(stderr,
			"lmm-torture: round books: created %llu, teardowns %" PRIu64 ", frees %" PRIu64
			", live %" PRIu64 ", pending %" PRIu64 ", online %" PRIu64 "\n",
			created, st.teardowns, st.frees, st.contexts_live, st.frees_pending,
			st.workers_online);
		violation("a context was leaked, or freed twice, or a worker stayed online");
	}
	ret = lmm_domain_destroy(r.d);
	if (ret)
		violation("lmm_domain_destroy failed after a clean round");
	for (unsigned i = 0; i < nslots; i++)
		pthread_mutex_destroy(&r.lock[i]);
	atomic_fetch_add(&total_created, created);
	atomic_fetch_add(&total_rounds, 1);
	atomic_fetch_add(&total_signals, st.signals_sent);
	atomic_fetch_add(&total_unanswered, st.signals_unanswered);
}

static void report(const char *scheme, double secs)
{
	printf("lmm-torture %s: %.1fs, %llu rounds, %llu contexts created, %llu freed\n", scheme,
	       secs, (unsigned long long)total_rounds, (unsigned long long)total_created,
	       (unsigned long long)total_frees);
	for (unsigned o = 0; o < OP_NR; o++)
		printf("  %-40s %12llu\n", op_names[o], (unsigned long long)op_count[o]);
	printf("  %-40s %12llu\n", "signals sent", (unsigned long long)total_signals);
	printf("  %-40s %12llu\n", "of which again, unanswered for 1s", (unsigned long long)total_unanswered);
	printf("  age (last put -> free):");
	unsigned last = 0;
	for (unsigned b = 0; b < AGE_BUCKETS; b++)
		if (age_hist[b])
			last = b;
	for (unsigned b = 0; b <= last; b++)
		printf(" %s%uus:%llu", b == AGE_BUCKETS - 1 ? ">=" : "<", 1u << b,
		       (unsigned long long)age_hist[b]);
	printf("\n");
}

static void reset_counters(void)
{
	for (unsigned o = 0; o < OP_NR; o++)
		atomic_store(&op_count[o], 0);
	for (unsigned b = 0; b < AGE_BUCKETS; b++)
		atomic_store(&age_hist[b], 0);
	atomic_store(&total_frees, 0);
	atomic_store(&total_created, 0);
	atomic_store(&total_rounds, 0);
	atomic_store(&total_signals, 0);
	atomic_store(&total_unanswered, 0);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: lmm-torture [--scheme NAME|all] [--seconds S] [--workers N] "
		   "[--contexts N] [--seed N] [--round S] [--no-fork]\n");
}

int main(int argc, char **argv)
{
	const char *scheme_arg = "all";
	double seconds = 3, round_secs = 2;
	unsigned workers = 4, contexts = 8, seed = (unsigned)time(NULL);
	static const struct option opts[] = {
		{ "scheme", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "workers", required_argument, NULL, 'w' },
		{ "contexts", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 'S' },
		{ "round", required_argument, NULL, 'r' },
		{ "no-fork", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ 0, 0, 0, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "s:t:w:c:S:r:h", opts, NULL)) != -1) {
		switch (o) {
		case 's': scheme_arg = optarg; break;
		case 't': seconds = atof(optarg); break;
		case 'w': workers = (unsigned)atoi(optarg); break;
		case 'c': contexts = (unsigned)atoi(optarg); break;
		case 'S': seed = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': round_secs = atof(optarg); break;
		case 'F': no_fork = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (getenv("LMM_TEST_QEMU"))
		no_fork = true; /* see no_fork */
	if (workers < 1 || workers > MAX_WORKERS || contexts < 1 || contexts > MAX_SLOTS ||
	    seconds <= 0 || round_secs <= 0) {
		usage(stderr);
		return 2;
	}

	static const enum lmm_scheme built[] = H_SCHEME_LIST;
	enum lmm_scheme list[H_NSCHEMES];
	unsigned n = 0;
	if (strcmp(scheme_arg, "all") == 0) {
		for (unsigned i = 0; i < H_NSCHEMES; i++)
			list[n++] = built[i];
	} else {
		enum lmm_scheme s;
		if (lmm_scheme_parse(scheme_arg, &s)) {
			fprintf(stderr, "lmm-torture: unknown scheme %s\n", scheme_arg);
			return 2;
		}
		if (!lmm_scheme_available(s)) {
			fprintf(stderr, "lmm-torture: scheme %s is not built in\n", scheme_arg);
			return 77; /* meson's "skipped" */
		}
		list[n++] = s;
	}
	printf("lmm-torture: seed %u, %u workers, %u contexts\n", seed, workers, contexts);
	fflush(stdout);
	for (unsigned k = 0; k < n; k++) {
		reset_counters();
		unsigned long long start = now_ns();
		double left = seconds;
		unsigned rs = seed + k;
		while (left > 0) {
			double secs = left < round_secs ? left : round_secs;
			run_round(list[k], round_flags[rnd(&rs) % 4], secs, workers, contexts, rnd(&rs));
			left -= secs;
		}
		report(lmm_scheme_name(list[k]), (double)(now_ns() - start) / 1e9);
		fflush(stdout);
	}
	quarantine_flush();
	printf("lmm-torture: PASS\n");
	return 0;
}
