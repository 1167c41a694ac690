/* SPDX-License-Identifier: MIT */
/*
 * Which hook runs inside which call, on which thread: the matrix of
 * lazymm(7) ("HOOKS, CALLS AND THREADS"), measured. Instrumented hooks
 * record the public call in progress on their thread (every call below goes
 * through CALL or VCALL), whether they run in the domain's signal handler
 * (switch_ctx's LMM_SWITCH_SIGNAL; and the test's workers have a
 * sigaltstack, which the SA_ONSTACK handler runs on, so a free or teardown
 * there would show too), and whether the thread is one of the test's or the
 * library's. The scenarios
 * are the ones that make hooks run: an install, the last put while the
 * caller or another worker is lazy on the context, a switch away from a
 * lazy context whose count is 0, lmm_unlazy, the idle bracket, offline,
 * lmm_barrier, lmm_quiescent, thread exit, a worker that blocks the
 * signal, LMM_F_DEFER_FREE, LMM_F_NO_THREADS, rcu's backpressure.
 *
 * Each test asserts that every hook seen is allowed by the matrix, and
 * that every entry of the matrix was seen (except the rare ones, seen in a
 * test of their own); doc::man7_prints_the_matrix checks that lazymm(7)
 * prints exactly this matrix.
 */

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "sanitizer.h"

enum row {
	R_NONE, /* a test thread outside every call: never */
	R_SWITCH,
	R_UNLAZY,
	R_IDLE_ENTER,
	R_IDLE_EXIT,
	R_OFFLINE,
	R_PUT,
	R_DROP,
	R_BARRIER,
	R_POLL,
	R_QUIESCENT,
	R_EXIT, /* a worker thread that exits while online (a TLS destructor takes it offline) */
	R_OTHER, /* every other call: never */
	R_HANDLER, /* the domain's signal handler, on a worker */
	R_LIBRARY, /* a thread the library created */
	NROWS
};

static const char *const row_name[NROWS] = {
	[R_NONE] = "no call",
	[R_SWITCH] = ".Fn lmm_switch",
	[R_UNLAZY] = ".Fn lmm_unlazy",
	[R_IDLE_ENTER] = ".Fn lmm_idle_enter",
	[R_IDLE_EXIT] = ".Fn lmm_idle_exit",
	[R_OFFLINE] = ".Fn lmm_worker_offline",
	[R_PUT] = ".Fn lmm_put",
	[R_DROP] = ".Fn lmm_drop",
	[R_BARRIER] = ".Fn lmm_barrier",
	[R_POLL] = ".Fn lmm_poll",
	[R_QUIESCENT] = ".Fn lmm_quiescent",
	[R_EXIT] = "thread exit",
	[R_OTHER] = "any other call",
	[R_HANDLER] = "signal handler",
	[R_LIBRARY] = "library thread",
};

enum { H_SWITCH = 1, H_TEARDOWN = 2, H_FREE = 4 };

/* refcount and hazard: the last holder to leave (a switch or a drop) frees. */
#define FREED_BY_LAST_HOLDER                     \
	{                                        \
		[R_SWITCH] = H_SWITCH | H_FREE,  \
		[R_UNLAZY] = H_SWITCH | H_FREE,  \
		[R_OFFLINE] = H_SWITCH | H_FREE, \
		[R_PUT] = H_TEARDOWN | H_FREE,   \
		[R_DROP] = H_FREE,               \
		[R_EXIT] = H_SWITCH | H_FREE,    \
	}

/* The matrix: per scheme (refcount, shootdown, hazard, rcu), per row. */
static const unsigned matrix[4][NROWS] = {
	[0] = FREED_BY_LAST_HOLDER,
	[1] = {
		[R_SWITCH] = H_SWITCH,
		[R_UNLAZY] = H_SWITCH,
		[R_OFFLINE] = H_SWITCH,
		[R_PUT] = H_SWITCH | H_TEARDOWN | H_FREE,
		[R_DROP] = H_SWITCH | H_FREE,
		[R_EXIT] = H_SWITCH,
		[R_HANDLER] = H_SWITCH,
		[R_LIBRARY] = H_FREE,
	},
	[2] = FREED_BY_LAST_HOLDER,
	[3] = {
		[R_SWITCH] = H_SWITCH,
		[R_UNLAZY] = H_SWITCH,
		[R_IDLE_ENTER] = H_SWITCH,
		[R_IDLE_EXIT] = H_SWITCH,
		[R_OFFLINE] = H_SWITCH,
		[R_PUT] = H_SWITCH | H_TEARDOWN,
		[R_BARRIER] = H_SWITCH,
		[R_QUIESCENT] = H_SWITCH,
		[R_EXIT] = H_SWITCH,
		[R_HANDLER] = H_SWITCH,
		[R_LIBRARY] = H_FREE,
	},
};

/*
 * Allowed, but only in a situation the main scenarios do not make:
 * LMM_F_NO_THREADS, where lmm_poll and lmm_barrier (which polls) run what
 * a library thread would (matrix_no_threads below); rcu's last drop waits in backpressure (more than rcu_backlog_max frees waiting
 * for a grace period) and first leaves a lazy context that is dying
 * (rcu_backpressure below).
 */
static const unsigned rare[4][NROWS] = {
	[0] = { [R_BARRIER] = H_FREE, [R_POLL] = H_FREE },
	[1] = { [R_BARRIER] = H_FREE, [R_POLL] = H_FREE },
	[2] = { [R_BARRIER] = H_FREE, [R_POLL] = H_FREE },
	[3] = { [R_DROP] = H_SWITCH },
};

/* --- the instrumentation --- */

static __thread enum row in_call;   /* the call in progress on this thread */
static __thread bool test_thread;   /* one of ours, with a sigaltstack */
static __thread char altstack[65536];
static __thread stack_t old_ss;
static atomic_uint seen[NROWS];
static atomic_int bad_handler_switch; /* in the handler, not towards init */
static atomic_int bad_flags;          /* LMM_SWITCH_SIGNAL off the sigaltstack, or missing on it */

static void thread_begin(void)
{
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	if (sigaltstack(&ss, &old_ss))
		h_fail("sigaltstack");
	test_thread = true;
}

static void thread_end(void)
{
	sigaltstack(&old_ss, NULL); /* a sanitizer's own, which it unmaps at thread exit */
	test_thread = false;
}

static bool on_altstack(void)
{
	stack_t ss;
	return sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK);
}

/* Async-signal-safe: sigaltstack(2) and lock-free atomics. @sig: LMM_SWITCH_SIGNAL. */
static enum row record(unsigned hook, bool sig)
{
	bool alt = on_altstack();
#ifndef LMM_TEST_TSAN /* TSan may run a handler later, off the sigaltstack */
	if (alt != sig && test_thread)
		atomic_store(&bad_flags, 1);
#endif
	enum row r = !test_thread ? R_LIBRARY : sig || alt ? R_HANDLER : in_call;
	atomic_fetch_or(&seen[r], hook);
	return r;
}

static enum row enter(enum row r)
{
	in_call = r;
	return r;
}

static int leave(int v)
{
	in_call = R_NONE;
	return v;
}

/* Every lazymm call the test makes: attributed to its row while it runs. */
#define CALL(row, expr) (enter(row), leave(expr))
#define VCALL(row, expr) \
	do {             \
		enter(row); \
		expr;      \
		leave(0);  \
	} while (0)

/* Each hook records, then the harness's hook checks the contract and counts. */
static void i_switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next,
			 unsigned flags)
{
	enum row r = record(H_SWITCH, flags & LMM_SWITCH_SIGNAL);
	if (r == R_HANDLER && next != lmm_init_ctx(lmm_ctx_domain(next)))
		atomic_store(&bad_handler_switch, 1);
	harness_ops.switch_ctx(w, prev, next, flags);
}

static void i_teardown(struct lmm_ctx *c)
{
	record(H_TEARDOWN, false);
	harness_ops.teardown(c);
}

static void i_free(struct lmm_ctx *c)
{
	record(H_FREE, false);
	harness_ops.free(c); /* counts TCTX(c)->frees; the test frees the memory */
}

static const struct lmm_ops ops = { i_switch_ctx, i_teardown, i_free };

static struct lmm_domain *domain(enum lmm_scheme s, unsigned flags)
{
	struct lmm_config cfg = { .scheme = s, .ops = &ops, .flags = flags, .timeout_ms = 20000 };
	struct lmm_domain *d = NULL;
	int ret = CALL(R_OTHER, lmm_domain_create(&cfg, &d));
	cr_assert_eq(ret, 0, "lmm_domain_create: %d", ret);
	return d;
}

static struct tctx *ctx(struct lmm_domain *d)
{
	struct tctx *c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	h_tctx_prepare(c, false);
	int ret = CALL(R_OTHER, lmm_ctx_init(d, &c->ctx));
	cr_assert_eq(ret, 0);
	return c;
}

static struct lmm_worker *online(struct lmm_domain *d)
{
	struct lmm_worker *w = NULL;
	if (CALL(R_OTHER, lmm_worker_online(d, NULL, &w)))
		h_fail("lmm_worker_online");
	return w;
}

static void nap_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static bool no_threads; /* the domain under test has LMM_F_NO_THREADS */

/* Poll (LMM_F_NO_THREADS) and barrier until every free ran. */
static void settle(struct lmm_domain *d, struct tctx **cs, int n)
{
	for (int tries = 0; tries < 200; tries++) {
		if (no_threads)
			CALL(R_POLL, lmm_poll(d));
		int ret = CALL(R_BARRIER, lmm_barrier(d));
		bool all = ret == 0;
		for (int i = 0; i < n; i++)
			all = all && atomic_load(&cs[i]->frees) == 1;
		if (all)
			return;
		nap_ms(5);
	}
	cr_assert_fail("frees still missing after 200 barriers");
}

/* --- a second worker, lazy on a context until told to stop --- */

enum lazy_mode {
	LAZY_RUN,   /* runs context-less tasks, no sleep bracket */
	LAZY_IDLE,  /* sleeps in the idle bracket */
	LAZY_BLOCK, /* runs context-less tasks with the domain's signal blocked */
	LAZY_IDLE_BLOCK, /* sleeps in the idle bracket with the signal blocked */
};

struct lazy_worker {
	struct lmm_domain *d;
	struct lmm_ctx *ctx;
	enum lazy_mode mode;
	int signo;
	unsigned unblock_after; /* LAZY_BLOCK: unblock after this many tasks (at least 1 ms each); 0: at stop */
	atomic_bool ready, stop;
	pthread_t thread;
};

static void *lazy_main(void *arg)
{
	struct lazy_worker *t = arg;
	thread_begin();
	struct lmm_worker *w = online(t->d);
	VCALL(R_SWITCH, lmm_switch(w, t->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, t->signo);
	bool idle = t->mode == LAZY_IDLE || t->mode == LAZY_IDLE_BLOCK;
	bool block = t->mode == LAZY_BLOCK || t->mode == LAZY_IDLE_BLOCK;
	if (block)
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	atomic_store(&t->ready, true);
	unsigned loops = 0;
	while (!atomic_load(&t->stop)) {
		if (idle)
			VCALL(R_IDLE_ENTER, lmm_idle_enter(w));
		nap_ms(idle && block ? 200 : 1);
		if (idle)
			VCALL(R_IDLE_EXIT, lmm_idle_exit(w));
		VCALL(R_SWITCH, lmm_switch(w, NULL)); /* a context-less task */
		if (block && ++loops == t->unblock_after)
			pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	}
	if (block)
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (CALL(R_OFFLINE, lmm_worker_offline(w)))
		h_fail("offline");
	thread_end();
	return NULL;
}

/* A worker that exits while online, lazy on a context (after its last put if put_first). */
struct exiter {
	struct lmm_domain *d;
	struct lmm_ctx *ctx;
	bool put_first;
};

static void *exit_main(void *arg)
{
	struct exiter *x = arg;
	thread_begin();
	struct lmm_worker *w = online(x->d);
	VCALL(R_SWITCH, lmm_switch(w, x->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	if (x->put_first)
		VCALL(R_PUT, lmm_put(x->ctx));
	thread_end();
	test_thread = true; /* what the TLS destructor runs is attributed to the exit */
	in_call = R_EXIT;
	return NULL;
}

static void lazy_start(struct lazy_worker *t, struct lmm_domain *d, struct lmm_ctx *c,
		       enum lazy_mode mode, unsigned unblock_after)
{
	t->d = d;
	t->ctx = c;
	t->mode = mode;
	t->signo = lmm_default_signo();
	t->unblock_after = unblock_after;
	atomic_init(&t->ready, false);
	atomic_init(&t->stop, false);
	cr_assert_eq(pthread_create(&t->thread, NULL, lazy_main, t), 0);
	while (!atomic_load(&t->ready))
		nap_ms(1);
}

static void lazy_stop(struct lazy_worker *t)
{
	atomic_store(&t->stop, true);
	cr_assert_eq(pthread_join(t->thread, NULL), 0);
}

/* --- the scenarios --- */

#define NCTX 18

static void scenarios(struct lmm_domain *d)
{
	struct tctx *c[NCTX];
	for (int i = 0; i < NCTX; i++)
		c[i] = ctx(d);
	struct lmm_worker *w = online(d);

	/* An install, the lazy hold, the lazy hit. */
	VCALL(R_SWITCH, lmm_switch(w, &c[0]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_SWITCH, lmm_switch(w, &c[0]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	/* The last put while the caller is lazy on it, then a switch away. */
	VCALL(R_PUT, lmm_put(&c[0]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, &c[1]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	/* The last drop (a count reference outlived the users) while lazy, then lmm_unlazy. */
	VCALL(R_OTHER, lmm_grab(&c[1]->ctx));
	VCALL(R_PUT, lmm_put(&c[1]->ctx));
	VCALL(R_DROP, lmm_drop(&c[1]->ctx));
	VCALL(R_UNLAZY, lmm_unlazy(w));
	/* The same, then lmm_quiescent. */
	VCALL(R_SWITCH, lmm_switch(w, &c[17]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_OTHER, lmm_grab(&c[17]->ctx));
	VCALL(R_PUT, lmm_put(&c[17]->ctx));
	VCALL(R_DROP, lmm_drop(&c[17]->ctx));
	VCALL(R_QUIESCENT, lmm_quiescent(w));
	VCALL(R_UNLAZY, lmm_unlazy(w));
	/* The last put while lazy, then the idle bracket. */
	VCALL(R_SWITCH, lmm_switch(w, &c[2]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_PUT, lmm_put(&c[2]->ctx));
	VCALL(R_IDLE_ENTER, lmm_idle_enter(w));
	nap_ms(50);
	VCALL(R_IDLE_EXIT, lmm_idle_exit(w));
	/* A context nobody has installed: the last put, and a last drop. */
	VCALL(R_PUT, lmm_put(&c[3]->ctx));
	VCALL(R_OTHER, lmm_grab(&c[4]->ctx));
	VCALL(R_PUT, lmm_put(&c[4]->ctx));
	VCALL(R_DROP, lmm_drop(&c[4]->ctx));
	/* lmm_membarrier, with a context current. */
	VCALL(R_SWITCH, lmm_switch(w, &c[5]->ctx));
	cr_assert_eq(CALL(R_OTHER, lmm_membarrier(&c[5]->ctx)), 0);
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	/* Asleep in the idle bracket, lazy on a context whose last put comes later. */
	VCALL(R_IDLE_ENTER, lmm_idle_enter(w));
	VCALL(R_PUT, lmm_put(&c[5]->ctx));
	nap_ms(50);
	VCALL(R_IDLE_EXIT, lmm_idle_exit(w));

	/* lmm_unlazy, and another worker's offline, while lazy on a live context. */
	VCALL(R_SWITCH, lmm_switch(w, &c[12]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_UNLAZY, lmm_unlazy(w));
	struct lazy_worker t;
	lazy_start(&t, d, &c[13]->ctx, LAZY_RUN, 0);
	lazy_stop(&t);
	VCALL(R_PUT, lmm_put(&c[12]->ctx));
	VCALL(R_PUT, lmm_put(&c[13]->ctx));

	/* Another worker lazy on a context when the last put comes. */
	static const enum lazy_mode modes[] = { LAZY_RUN, LAZY_IDLE, LAZY_BLOCK, LAZY_IDLE_BLOCK };
	static const int lazy_ctx[] = { 6, 7, 8, 14 };
	for (int i = 0; i < 4; i++) {
		lazy_start(&t, d, &c[lazy_ctx[i]]->ctx, modes[i], 0);
		VCALL(R_PUT, lmm_put(&c[lazy_ctx[i]]->ctx));
		nap_ms(100);
		lazy_stop(&t);
	}
	/* The same with the caller lazy on it too. */
	VCALL(R_SWITCH, lmm_switch(w, &c[9]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	lazy_start(&t, d, &c[9]->ctx, LAZY_RUN, 0);
	VCALL(R_PUT, lmm_put(&c[9]->ctx));
	nap_ms(100);
	lazy_stop(&t);
	/* Worker threads that exit while online. */
	struct exiter x1 = { d, &c[15]->ctx, false }, x2 = { d, &c[16]->ctx, true };
	h_on_thread(exit_main, &x1);
	h_on_thread(exit_main, &x2);
	VCALL(R_PUT, lmm_put(&c[15]->ctx));
	/* lmm_barrier while lazy on a context whose last put ran (rcu parks the worker: it leaves it). */
	VCALL(R_SWITCH, lmm_switch(w, &c[10]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_PUT, lmm_put(&c[10]->ctx));
	cr_assert_eq(CALL(R_BARRIER, lmm_barrier(d)), 0);
	/* Offline while lazy on a context whose last put ran. */
	VCALL(R_SWITCH, lmm_switch(w, &c[11]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_PUT, lmm_put(&c[11]->ctx));
	cr_assert_eq(CALL(R_OFFLINE, lmm_worker_offline(w)), 0);

	settle(d, c, NCTX);
	cr_assert_eq(CALL(R_OTHER, lmm_domain_destroy(d)), 0);
	for (int i = 0; i < NCTX; i++)
		free(c[i]);
}

/* "S", "T", "F" for each hook in m, "-" for none; rare ones in parentheses. */
static const char *hooks_str(unsigned m, unsigned maybe, char *buf, size_t n)
{
	static const char *const name[] = { "S", "T", "F" };
	size_t k = 0;
	buf[0] = 0;
	for (int h = 0; h < 3; h++) {
		const char *sep = k ? " " : "";
		if (m & (1u << h))
			k += (size_t)snprintf(buf + k, n - k, "%s%s", sep, name[h]);
		else if (maybe & (1u << h))
			k += (size_t)snprintf(buf + k, n - k, "%s(%s)", sep, name[h]);
	}
	if (!k)
		snprintf(buf, n, "-");
	return buf;
}

/* What the hooks did == want, but that rare entries may be missing. */
static void check(enum lmm_scheme s, const unsigned *want, const unsigned *maybe)
{
	char a[16], b[16];
	for (int r = 0; r < NROWS; r++) {
		unsigned got = atomic_load(&seen[r]);
		cr_expect((got & ~(want[r] | maybe[r])) == 0 && (got & want[r]) == want[r],
			  "%s: %s ran %s, the matrix says %s", lmm_scheme_name(s), row_name[r],
			  hooks_str(got, 0, a, sizeof(a)), hooks_str(want[r], maybe[r], b, sizeof(b)));
	}
	cr_expect_eq(atomic_load(&bad_handler_switch), 0, "a switch in the handler went elsewhere than init");
	cr_expect_eq(atomic_load(&bad_flags), 0,
		     "switch_ctx's LMM_SWITCH_SIGNAL and the sigaltstack disagree (or a free ran on it)");
}

SCHEME_TEST(hooks, matrix)
{
	thread_begin();
	scenarios(domain(scheme, 0));
	check(scheme, matrix[scheme - 1], rare[scheme - 1]);
	thread_end();
}

/* LMM_F_DEFER_FREE: free moves to the library thread; every other entry stays. */
SCHEME_TEST(hooks, matrix_defer_free)
{
	unsigned want[NROWS], maybe[NROWS];
	for (int r = 0; r < NROWS; r++) {
		want[r] = matrix[scheme - 1][r] & ~H_FREE;
		maybe[r] = rare[scheme - 1][r] & ~H_FREE;
	}
	want[R_LIBRARY] = H_FREE;
	thread_begin();
	scenarios(domain(scheme, LMM_F_DEFER_FREE));
	check(scheme, want, maybe);
	thread_end();
}

/*
 * lazymm(7) prints this matrix: one line per row, in this order, each
 * ".It ROW Ta REFCOUNT Ta SHOOTDOWN Ta HAZARD Ta RCU" (meson passes the
 * page's path in LMM_MAN7).
 */
Test(hooks, man7_prints_the_matrix)
{
	const char *path = getenv("LMM_MAN7");
	if (!path)
		cr_skip_test("LMM_MAN7 is not set");
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	static char page[1 << 17];
	size_t n = fread(page, 1, sizeof(page) - 1, f);
	fclose(f);
	page[n] = 0;
	const char *at = page;
	for (int r = R_SWITCH; r < NROWS; r++) {
		char line[256], cell[4][16];
		for (int s = 0; s < 4; s++)
			hooks_str(matrix[s][r], rare[s][r], cell[s], sizeof(cell[s]));
		snprintf(line, sizeof(line), "\n.It %s Ta %s Ta %s Ta %s Ta %s\n",
			 row_name[r] + (row_name[r][0] == '.'), cell[0], cell[1], cell[2], cell[3]);
		const char *hit = strstr(at, line);
		cr_expect_not_null(hit, "%s lacks the line (or has it out of order): %s", path, line + 1);
		if (hit)
			at = hit + 1;
	}
}

/*
 * LMM_F_NO_THREADS: what a library thread would run happens in lmm_poll and
 * in lmm_barrier (which polls); with LMM_F_DEFER_FREE every free does.
 */
static void no_threads_matrix(enum lmm_scheme scheme, unsigned flags)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops, .flags = flags };
	struct lmm_domain *d = NULL;
	if (scheme == LMM_SCHEME_RCU) {
		cr_expect_eq(lmm_domain_create(&cfg, &d), -EINVAL, "rcu takes LMM_F_NO_THREADS");
		return;
	}
	unsigned want[NROWS], maybe[NROWS];
	for (int r = 0; r < NROWS; r++) {
		want[r] = matrix[scheme - 1][r] & ~(flags & LMM_F_DEFER_FREE ? H_FREE : 0);
		maybe[r] = rare[scheme - 1][r];
	}
	/* Which of the two runs a handed-over shootdown's free, and whether a
	 * holder is still there to signal when the poll comes, is timing. */
	maybe[R_POLL] = maybe[R_BARRIER] = want[R_LIBRARY];
	maybe[R_HANDLER] = want[R_HANDLER];
	want[R_HANDLER] = 0;
	if (flags & LMM_F_DEFER_FREE)
		want[R_POLL] = want[R_BARRIER] = H_FREE;
	want[R_LIBRARY] = 0;
	no_threads = true;
	thread_begin();
	scenarios(domain(scheme, flags));
	check(scheme, want, maybe);
	thread_end();
}

SCHEME_TEST(hooks, matrix_no_threads)
{
	no_threads_matrix(scheme, LMM_F_NO_THREADS);
}

SCHEME_TEST(hooks, matrix_no_threads_defer_free)
{
	no_threads_matrix(scheme, LMM_F_NO_THREADS | LMM_F_DEFER_FREE);
}

#ifdef LMM_HAVE_RCU
/*
 * rcu's backpressure: with rcu_backlog_max frees already waiting for a grace
 * period (held up by a worker that blocks the signal), a last drop waits,
 * and first leaves the caller's own lazy context if that one is dying.
 */
Test(hooks, backpressure_rcu, .timeout = 60)
{
	setenv("LMM_RCU_BACKLOG_MAX", "1", 1);
	thread_begin();
	struct lmm_domain *d = domain(LMM_SCHEME_RCU, 0);
	struct tctx *c[3] = { ctx(d), ctx(d), ctx(d) };
	struct lmm_worker *w = online(d);
	struct lazy_worker t;
	lazy_start(&t, d, &c[0]->ctx, LAZY_BLOCK, 2000); /* then the drop's wait ends */
	VCALL(R_PUT, lmm_put(&c[1]->ctx)); /* queued: the backlog is full */
	VCALL(R_SWITCH, lmm_switch(w, &c[2]->ctx));
	VCALL(R_SWITCH, lmm_switch(w, NULL));
	VCALL(R_OTHER, lmm_grab(&c[2]->ctx));
	VCALL(R_PUT, lmm_put(&c[2]->ctx));
	memset((void *)seen, 0, sizeof(seen));
	VCALL(R_DROP, lmm_drop(&c[2]->ctx));
	cr_expect_eq(atomic_load(&seen[R_DROP]), H_SWITCH, "lmm_drop ran %u", atomic_load(&seen[R_DROP]));
	for (int r = 0; r < NROWS; r++)
		cr_expect_eq(atomic_load(&seen[r]) & ~(matrix[3][r] | rare[3][r]), 0, "%s", row_name[r]);
	lazy_stop(&t);
	VCALL(R_PUT, lmm_put(&c[0]->ctx));
	cr_assert_eq(CALL(R_OFFLINE, lmm_worker_offline(w)), 0);
	settle(d, c, 3);
	cr_assert_eq(CALL(R_OTHER, lmm_domain_destroy(d)), 0);
	for (int i = 0; i < 3; i++)
		free(c[i]);
	thread_end();
}
#endif
