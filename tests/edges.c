/* SPDX-License-Identifier: MIT */
/*
 * The edges a runtime reaches by doing ordinary things: a free hook that
 * releases its own memory and drops another context, a thread cancelled in
 * a final put, in lmm_membarrier's fallback or in a failing create, a
 * signal still pending when the domain goes away, fork() from a
 * multi-threaded process, a live context initialised again, signal numbers
 * a runtime must not use, a worker with the signal blocked, a handler on an
 * alternate stack, and rcu's bounds (backpressure, counted lazy sleepers).
 * Public API only (tests/harness.c); each test names the rule it checks.
 */

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sanitizer.h"
#include "harness.h"

static void nap_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

static void sig_mask(int signo, int how)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, signo);
	pthread_sigmask(how, &set, NULL);
}

static bool uses_signals(enum lmm_scheme s)
{
	return s == LMM_SCHEME_SHOOTDOWN || s == LMM_SCHEME_RCU;
}

static struct lmm_domain *domain_timeout(enum lmm_scheme s, unsigned timeout_ms)
{
	struct lmm_config cfg = { .scheme = s, .ops = &harness_ops, .timeout_ms = timeout_ms };
	struct lmm_domain *d = NULL;
	int ret = lmm_domain_create(&cfg, &d);
	cr_assert_eq(ret, 0, "lmm_domain_create: %d", ret);
	return d;
}

/* Barrier until every context made so far is freed, then destroy. */
static void finish(struct lmm_domain *d)
{
	int ret = 0;
	for (int i = 0; i < 50; i++) {
		ret = lmm_barrier(d);
		struct lmm_stats st;
		cr_assert_eq(lmm_stats(d, &st), 0);
		if (!ret && st.contexts_live == 0)
			break;
	}
	cr_assert_eq(ret, 0, "lmm_barrier: %d", ret);
	ret = lmm_domain_destroy(d);
	cr_assert_eq(ret, 0, "lmm_domain_destroy: %d (a free was lost)", ret);
}

/* ---------- a free hook that frees itself, then drops another context ---------- */

/*
 * The header allows free to drop other contexts. The nested final drop must
 * not read the context whose free is running: its memory is the
 * application's again (ASan reports the read as a use after free).
 */
SCHEME_TEST(edges, free_hook_releases_then_drops)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *parent = h_ctx(d, true);
	lmm_grab(&parent->ctx);
	lmm_put(&parent->ctx); /* users 0: parent lives on the count taken above */
	struct tctx *child = h_ctx(d, true);
	child->drop_on_free = &parent->ctx;
	lmm_put(&child->ctx); /* free(child) frees its memory, then drops parent's last count */
	finish(d);
}

/* ---------- lmm_ctx_init on a live context ---------- */

SCHEME_TEST(edges, ctx_init_live_refused)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, true);
	cr_assert_eq(lmm_ctx_init(d, &a->ctx), -EBUSY);
	cr_assert_eq(lmm_ctx_init(d, lmm_init_ctx(d)), -EINVAL);
	lmm_put(&a->ctx); /* still one user, one count: the refused call changed nothing */
	finish(d);
}

/* ---------- signal numbers and blocked signals ---------- */

SCHEME_TEST(edges, signo_rejected)
{
	static const int bad[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT, SIGCHLD,
				   SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT, SIGSTOP, SIGKILL, SIGINT,
				   SIGQUIT, SIGTERM, SIGHUP, SIGALRM, 65, -1 };
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops };
	struct lmm_domain *d = NULL;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.signo = bad[i];
		cr_assert_eq(lmm_domain_create(&cfg, &d), -EINVAL, "signal %d accepted", bad[i]);
	}
	static const int good[] = { SIGUSR1, SIGUSR2, 0 };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cfg.signo = good[i];
		cr_assert_eq(lmm_domain_create(&cfg, &d), 0, "signal %d refused", good[i]);
		cr_assert_eq(lmm_domain_destroy(d), 0);
	}
	cfg.signo = SIGRTMIN + 3;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

static void *online_blocked_main(void *arg)
{
	struct lmm_domain *d = arg;
	sig_mask(lmm_default_signo(), SIG_BLOCK);
	struct lmm_worker *w = NULL;
	int ret = lmm_worker_online(d, NULL, &w);
	return (void *)(intptr_t)ret;
}

/* A worker that blocks the domain's signal from the start could never be reached. */
SCHEME_TEST(edges, online_with_signal_blocked)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	pthread_t t;
	void *ret;
	cr_assert_eq(pthread_create(&t, NULL, online_blocked_main, d), 0);
	cr_assert_eq(pthread_join(t, &ret), 0);
	/* Domains of the other schemes signal only in the lmm_membarrier fallback. */
	if (uses_signals(scheme))
		cr_assert_eq((intptr_t)ret, -EDEADLK);
	else if ((intptr_t)ret != 0)
		cr_assert_eq((intptr_t)ret, -EDEADLK);
	finish(d);
}

/* ---------- a worker driven step by step ---------- */

struct holder {
	struct lmm_domain *d;
	struct lmm_ctx *a;
	bool block, idle, altstack;
	bool running; /* stays in a task of a (lmm_membarrier's target) instead of going lazy */
	atomic_int step; /* main -> holder: 1 unblock, 2 offline and exit */
	atomic_bool ready, done;
	pthread_t th;
	char *alt;
	size_t alt_size;
};

static void *holder_main(void *arg)
{
	struct holder *h = arg;
	struct lmm_worker *w = h_online(h->d);
	stack_t ss = { .ss_sp = h->alt, .ss_size = h->alt_size }, old_ss;
	if (h->altstack && sigaltstack(&ss, &old_ss))
		h_fail("sigaltstack");
	if (h->block)
		sig_mask(lmm_default_signo(), SIG_BLOCK);
	lmm_switch(w, h->a);
	if (!h->running)
		lmm_switch(w, NULL); /* lazy on a */
	if (h->idle)
		lmm_idle_enter(w);
	atomic_store(&h->ready, true);
	while (atomic_load(&h->step) < 1)
		nap_us(200);
	if (h->idle)
		lmm_idle_exit(w);
	if (h->running)
		lmm_switch(w, NULL);
	if (h->block) {
		lmm_worker_offline(w); /* leaves a: nothing of ours is needed any more */
		while (atomic_load(&h->step) < 2)
			nap_us(200);
		sig_mask(lmm_default_signo(), SIG_UNBLOCK); /* what is still pending lands now */
	} else {
		while (atomic_load(&h->step) < 2)
			nap_us(200);
		lmm_worker_offline(w);
	}
	if (h->altstack)
		sigaltstack(&old_ss, NULL); /* a sanitizer's own, which it unmaps at thread exit */
	atomic_store(&h->done, true);
	return NULL;
}

static void holder_start(struct holder *h)
{
	atomic_init(&h->step, 0);
	atomic_init(&h->ready, false);
	atomic_init(&h->done, false);
	cr_assert_eq(pthread_create(&h->th, NULL, holder_main, h), 0);
	while (!atomic_load(&h->ready))
		nap_us(100);
}

/* ---------- a signal still pending when the domain goes away ---------- */

/*
 * The worker blocks the domain's signal while lazy; the final put (shootdown)
 * or a grace period's nudge (rcu) sends it. The worker goes offline and the
 * domain is destroyed with the signal still pending; unblocking it then must
 * not kill the process (SIG_DFL for a realtime signal terminates).
 */
/*
 * refcount and hazard signal only in lmm_membarrier's fallback: a worker in
 * a task of the context with the signal blocked makes it time out with the
 * signal left pending; offline, destroy, unblock.
 */
static void pending_membarrier_signal(enum lmm_scheme scheme)
{
	struct lmm_domain *d = domain_timeout(scheme, 300);
	struct tctx *a = h_ctx(d, true);
	struct holder h = { .d = d, .a = &a->ctx, .block = true, .running = true };
	holder_start(&h);
	int ret = lmm_membarrier(&a->ctx);
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	bool fallback = st.signals_sent != 0;
	cr_assert_eq(ret, fallback ? -ETIMEDOUT : 0, "lmm_membarrier: %d", ret);
	atomic_store(&h.step, 1); /* offline with the signal pending */
	while (lmm_stats(d, &st) == 0 && st.workers_online)
		nap_us(200);
	lmm_put(&a->ctx);
	finish(d);
	atomic_store(&h.step, 2); /* unblock: the pending signal lands with no domain left */
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	cr_assert(atomic_load(&h.done));
	if (!fallback)
		cr_skip_test("%s sends no signal under membarrier(2) (run in a -Dmembarrier=false build)",
			     lmm_scheme_name(scheme));
}

SCHEME_TEST(edges, pending_signal_outlives_domain)
{
	if (!uses_signals(scheme)) {
		pending_membarrier_signal(scheme);
		return;
	}
	struct lmm_domain *d = domain_timeout(scheme, 3000);
	struct tctx *a = h_ctx(d, true);
	struct holder h = { .d = d, .a = &a->ctx, .block = true };
	holder_start(&h);
	struct tctx *b = h_ctx(d, true);
	lmm_put(&b->ctx); /* rcu: a grace period that waits for the holder, who is nudged */
	if (scheme == LMM_SCHEME_SHOOTDOWN)
		lmm_put(&a->ctx); /* shootdown: the holder is signalled; the put hands a over */
	nap_us(100000);       /* past rcu's nudge delay */
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	cr_assert_gt(st.signals_sent + st.rcu_nudges, 0, "no signal was sent to the holder");
	atomic_store(&h.step, 1); /* offline with the signal pending */
	while (lmm_stats(d, &st) == 0 && st.workers_online)
		nap_us(200);
	if (scheme != LMM_SCHEME_SHOOTDOWN)
		lmm_put(&a->ctx);
	finish(d);
	atomic_store(&h.step, 2); /* unblock: the pending signal lands with no domain left */
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	cr_assert(atomic_load(&h.done));
}

/* ---------- cancellation inside a final put ---------- */

struct putter {
	struct lmm_domain *d;
	struct tctx **ctx;
	int n;
	atomic_int started;
};

static void *putter_main(void *arg)
{
	struct putter *p = arg;
	for (int i = 0; i < p->n; i++) {
		atomic_store(&p->started, i + 1);
		lmm_put(&p->ctx[i]->ctx);
	}
	for (;;)
		pause(); /* a cancellation point: the test cancels us here at the latest */
	return NULL;
}

/*
 * A thread cancelled while its final put waits (shootdown: the dropper's
 * polling round; rcu: backpressure) must not lose the free nor wedge the
 * domain: no lazymm call is a cancellation point.
 */
SCHEME_TEST(edges, cancel_in_final_put)
{
	if (!uses_signals(scheme))
		cr_skip_test("%s's final put never waits", lmm_scheme_name(scheme));
#ifdef LMM_TEST_TSAN
	cr_skip_test("pthread_cancel under TSan (google/sanitizers#646)");
#endif
	if (scheme == LMM_SCHEME_RCU)
		setenv("LMM_RCU_BACKLOG_MAX", "1", 1); /* the second put waits */
	struct lmm_domain *d = domain_timeout(scheme, 1000);
	struct tctx *a = h_ctx(d, false); /* read after its free */
	struct holder h = { .d = d, .a = &a->ctx, .block = true };
	holder_start(&h); /* lazy on a, signal blocked: every wait is a long one */
	struct tctx *ctx[3] = { a, h_ctx(d, true), h_ctx(d, true) };
	struct putter p = { .d = d, .ctx = ctx, .n = 3 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, putter_main, &p), 0);
	/* shootdown: the first put polls the holder; rcu: the second waits for the first's grace period */
	while (atomic_load(&p.started) < (scheme == LMM_SCHEME_RCU ? 2 : 1))
		nap_us(1000);
	nap_us(20000); /* inside the wait */
	cr_assert_eq(pthread_cancel(t), 0);
	void *res;
	cr_assert_eq(pthread_join(t, &res), 0);
	cr_assert_eq(res, PTHREAD_CANCELED);
	for (int i = atomic_load(&p.started); i < 3; i++)
		lmm_put(&ctx[i]->ctx);
	atomic_store(&h.step, 1); /* the holder leaves */
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	finish(d);
	cr_assert_eq(atomic_load(&a->frees), 1);
	free(a);
}

/*
 * lmm_membarrier's signal fallback waits for the workers' handlers
 * (nanosleep between polls): with a worker in a task of the context and the
 * signal blocked, it waits until timeout_ms. Cancelled there, the thread
 * must carry on to the end of the call, which is no cancellation point.
 * Under membarrier(2) the call never waits: nothing to cancel.
 */
struct barrier_caller {
	struct lmm_ctx *ctx;
	atomic_bool calling;
	atomic_int ret; /* 1 until the call returned */
};

static void *membarrier_caller_main(void *arg)
{
	struct barrier_caller *b = arg;
	atomic_store(&b->calling, true);
	atomic_store(&b->ret, lmm_membarrier(b->ctx));
	for (;;)
		pause(); /* a cancellation point: the test cancels us here at the latest */
	return NULL;
}

SCHEME_TEST(edges, cancel_in_membarrier_fallback)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("pthread_cancel under TSan (google/sanitizers#646)");
#endif
	struct lmm_domain *d = domain_timeout(scheme, 300);
	struct tctx *a = h_ctx(d, true);
	struct holder h = { .d = d, .a = &a->ctx, .block = true, .running = true };
	holder_start(&h); /* in a task of a, signal blocked: the fallback waits for timeout_ms */
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	uint64_t sent = st.signals_sent;
	int ret = lmm_membarrier(&a->ctx);
	cr_assert_eq(lmm_stats(d, &st), 0);
	bool fallback = st.signals_sent != sent;
	if (fallback) {
		cr_assert_eq(ret, -ETIMEDOUT, "lmm_membarrier: %d", ret);
		struct barrier_caller b = { .ctx = &a->ctx };
		atomic_init(&b.calling, false);
		atomic_init(&b.ret, 1);
		pthread_t t;
		cr_assert_eq(pthread_create(&t, NULL, membarrier_caller_main, &b), 0);
		while (!atomic_load(&b.calling))
			nap_us(1000);
		nap_us(50000); /* inside the wait */
		cr_assert_eq(pthread_cancel(t), 0);
		void *res;
		cr_assert_eq(pthread_join(t, &res), 0);
		cr_assert_eq(res, PTHREAD_CANCELED);
		cr_assert_eq(atomic_load(&b.ret), -ETIMEDOUT,
			     "lmm_membarrier cancelled inside its wait (%d): it is no cancellation point",
			     atomic_load(&b.ret));
	} else {
		cr_assert_eq(ret, 0, "lmm_membarrier: %d", ret);
	}
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	lmm_put(&a->ctx);
	finish(d);
	if (!fallback)
		cr_skip_test("membarrier(2): lmm_membarrier never waits (run in a -Dmembarrier=false build)");
}

#ifdef LMM_HAVE_RCU
/*
 * lmm_domain_create's error path, when the reclaim thread cannot be created
 * (rcu needs it from the start), undoes the scheme's init and the signal.
 * A cancel pending by then must not act inside the call (no lazymm call is
 * a cancellation point): it would leave the domain half built and leaked.
 */
static int create_cancel_then_fail(pthread_t *t, void *(*start)(void *), void *arg, const char *name,
				   void *user)
{
	(void)t, (void)start, (void)arg, (void)name, (void)user;
	pthread_cancel(pthread_self()); /* pending: acts at the next cancellation point */
	return EAGAIN;
}

/* Its own frame, returned from before the cancel acts: ASan's thread exit
 * trips over the redzones of a frame that forced unwinding left poisoned. */
static __attribute__((noinline)) int create_failing(void)
{
	struct lmm_config cfg = { .scheme = LMM_SCHEME_RCU, .ops = &harness_ops, .flags = LMM_F_DEFER_FREE,
				  .thread_create = create_cancel_then_fail };
	struct lmm_domain *d = NULL;
	return lmm_domain_create(&cfg, &d);
}

static void *failed_create_main(void *arg)
{
	atomic_int *out = arg;
	atomic_store(out, create_failing());
	pthread_testcancel();
	return NULL;
}

Test(edges, cancel_pending_in_failed_create_rcu, .timeout = 60)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("pthread_cancel under TSan (google/sanitizers#646)");
#endif
	atomic_int ret;
	atomic_init(&ret, 1);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, failed_create_main, &ret), 0);
	void *res;
	cr_assert_eq(pthread_join(t, &res), 0);
	cr_assert_eq(res, PTHREAD_CANCELED);
	cr_assert_eq(atomic_load(&ret), -EAGAIN,
		     "lmm_domain_create cancelled inside its error path (%d)", atomic_load(&ret));
}
#endif

/*
 * The same with a cfg.thread_create that waits at a cancellation point
 * (nanosleep) and then creates the thread: lmm_domain_create completes,
 * and the cancel acts after it returned.
 */
static int create_cancel_then_sleep(pthread_t *t, void *(*start)(void *), void *arg, const char *name,
				    void *user)
{
	(void)name, (void)user;
	pthread_cancel(pthread_self()); /* pending: acts at the next cancellation point */
	h_nap_us(1000);                 /* one, unless lazymm holds cancellation off */
	return pthread_create(t, NULL, start, arg);
}

static __attribute__((noinline)) int create_sleeping(enum lmm_scheme scheme, struct lmm_domain **d)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops, .flags = LMM_F_DEFER_FREE,
				  .thread_create = create_cancel_then_sleep };
	return lmm_domain_create(&cfg, d);
}

struct sleeping_create {
	enum lmm_scheme scheme;
	struct lmm_domain *d;
	atomic_int ret;
};

static void *sleeping_create_main(void *arg)
{
	struct sleeping_create *sc = arg;
	atomic_store(&sc->ret, create_sleeping(sc->scheme, &sc->d));
	pthread_testcancel();
	return NULL;
}

SCHEME_TEST(edges, cancel_pending_in_thread_create)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("pthread_cancel under TSan (google/sanitizers#646)");
#endif
	struct sleeping_create sc = { .scheme = scheme };
	atomic_init(&sc.ret, 1);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, sleeping_create_main, &sc), 0);
	void *res;
	cr_assert_eq(pthread_join(t, &res), 0);
	cr_assert_eq(res, PTHREAD_CANCELED);
	cr_assert_eq(atomic_load(&sc.ret), 0, "lmm_domain_create cancelled inside cfg.thread_create (%d)",
		     atomic_load(&sc.ret));
	cr_assert_eq(lmm_domain_destroy(sc.d), 0);
}

/* ---------- the handler on an alternate stack ---------- */

static char *alt_lo, *alt_hi;
static atomic_int on_alt, off_alt;

static void alt_switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	char here;
	if (flags & LMM_SWITCH_SIGNAL)
		atomic_fetch_add(&here >= alt_lo && &here < alt_hi ? &on_alt : &off_alt, 1);
	harness_ops.switch_ctx(w, prev, next, flags);
}

/*
 * A runtime with small green-thread stacks gives its workers a sigaltstack.
 * shootdown: the last put signals the lazy holder, whose handler switches it
 * to init. rcu: a grace period first nudges it (its lazy hold becomes
 * counted), then the last put signals it and the handler leaves the context.
 */
static void handler_on_sigaltstack(enum lmm_scheme scheme)
{
	static struct lmm_ops ops;
	ops = harness_ops;
	ops.switch_ctx = alt_switch_ctx;
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops, .timeout_ms = 5000 };
	struct lmm_domain *d = NULL;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	size_t size = 64 * 1024;
	char *alt = malloc(size);
	cr_assert_not_null(alt);
	alt_lo = alt;
	alt_hi = alt + size;
	struct tctx *a = h_ctx(d, false); /* read after its free */
	struct holder h = { .d = d, .a = &a->ctx, .altstack = true, .alt = alt, .alt_size = size };
	holder_start(&h);
	if (scheme == LMM_SCHEME_RCU) {
		lmm_put(&h_ctx(d, true)->ctx); /* a grace period the holder stalls: nudged */
		cr_assert_eq(lmm_barrier(d), 0);
	}
	lmm_put(&a->ctx); /* the holder is signalled; its handler leaves a for init */
	for (int i = 0; i < 5000 && !atomic_load(&a->frees); i++)
		nap_us(1000);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(atomic_load(&on_alt) + atomic_load(&off_alt), 1, "no switch_ctx with LMM_SWITCH_SIGNAL");
	cr_assert_eq(atomic_load(&on_alt), 1, "switch to init in the handler ran off the sigaltstack");
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	finish(d);
	free(alt);
	free(a);
}

#ifdef LMM_HAVE_SHOOTDOWN
Test(edges, handler_runs_on_sigaltstack_shootdown, .timeout = 60) { handler_on_sigaltstack(LMM_SCHEME_SHOOTDOWN); }
#endif
#ifdef LMM_HAVE_RCU
Test(edges, handler_runs_on_sigaltstack_rcu, .timeout = 60) { handler_on_sigaltstack(LMM_SCHEME_RCU); }
#endif

/* ---------- rcu's bounds ---------- */

#ifdef LMM_HAVE_RCU
/* A full backlog with grace periods stalled: the final put returns after timeout_ms. */
Test(edges, backpressure_bounded_by_timeout_rcu, .timeout = 60)
{
	setenv("LMM_RCU_BACKLOG_MAX", "1", 1);
	struct lmm_domain *d = domain_timeout(LMM_SCHEME_RCU, 500);
	struct tctx *a = h_ctx(d, true);
	struct holder h = { .d = d, .a = &a->ctx, .block = true };
	holder_start(&h); /* never reports a quiescent state, and cannot be nudged */
	for (int i = 0; i < 4; i++)
		lmm_put(&h_ctx(d, true)->ctx); /* each returns: the backlog overshoots */
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	cr_assert_geq(st.frees_pending, 3);
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	lmm_put(&a->ctx);
	finish(d);
}

/*
 * A lazy worker asleep in the idle bracket holds its context by a counted
 * reference. When the context's last user goes, the free must still happen
 * while the worker sleeps.
 */
static void sleeper_freed(bool idle)
{
	struct lmm_domain *d = domain_timeout(LMM_SCHEME_RCU, 5000);
	struct tctx *a = h_ctx(d, false); /* read after its free */
	struct holder h = { .d = d, .a = &a->ctx, .idle = idle };
	holder_start(&h);
	if (!idle) {
		/* A grace period the sleeper stalls: its nudge counts the lazy hold. */
		lmm_put(&h_ctx(d, true)->ctx);
		cr_assert_eq(lmm_barrier(d), 0);
	}
	lmm_put(&a->ctx);
	for (int i = 0; i < 5000 && !atomic_load(&a->frees); i++)
		nap_us(1000);
	cr_assert_eq(atomic_load(&a->frees), 1, "a context held by a sleeping worker was not freed");
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	finish(d);
	free(a);
}

Test(edges, idle_sleeper_counted_hold_freed_rcu, .timeout = 60) { sleeper_freed(true); }

/*
 * The documented exception (lazymm.h, lmm_put(3), lmm_barrier(3),
 * lazymm(7), rcu.md): a sleeper in the idle bracket that also blocks the
 * signal cannot be made to leave. The last put gives up after 100 ms; the
 * count has not reached 0, so no free is due: frees_pending says 0 and
 * lmm_barrier returns 0 while the context lives on. Freed as soon as the
 * worker runs again (lmm_idle_exit leaves a last counted hold).
 */
Test(edges, blocked_idle_sleeper_holds_until_it_runs_rcu, .timeout = 60)
{
	struct lmm_domain *d = domain_timeout(LMM_SCHEME_RCU, 1000);
	struct tctx *a = h_ctx(d, false); /* read after its free */
	struct holder h = { .d = d, .a = &a->ctx, .idle = true, .block = true };
	holder_start(&h);
	lmm_put(&a->ctx); /* signals the sleeper, which blocks it: gives up after 100 ms */
	cr_assert_eq(lmm_barrier(d), 0);
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	cr_assert_eq(st.frees_pending, 0);
	cr_assert_eq(st.contexts_live, 1);
	cr_assert_eq(atomic_load(&a->frees), 0);
	atomic_store(&h.step, 1); /* lmm_idle_exit: the worker leaves a, whose count reaches 0 */
	for (int i = 0; i < 5000 && !atomic_load(&a->frees); i++)
		nap_us(1000);
	cr_assert_eq(atomic_load(&a->frees), 1, "not freed once the sleeper ran again");
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	finish(d);
	free(a);
}
Test(edges, nudged_sleeper_counted_hold_freed_rcu, .timeout = 60) { sleeper_freed(false); }
#endif

/* ---------- fork ---------- */

/* Run fn in a child with a watchdog; the child must exit 0. */
static void in_child(int (*fn)(void *), void *arg, const char *what)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		alarm(10);
		_exit(fn(arg));
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child status %#x", what, status);
}

/* A child's whole life cycle of a domain: the one thing a child may do. */
static int child_cycle(enum lmm_scheme s)
{
	struct lmm_config cfg = { .scheme = s, .ops = &harness_ops, .timeout_ms = 5000 };
	struct lmm_domain *d = NULL;
	int ret = lmm_domain_create(&cfg, &d);
	if (ret)
		return 10 - ret;
	if (lmm_worker_self())
		return 3; /* the forking thread's worker is not ours */
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, true), *b = h_ctx(d, true);
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_switch(w, &b->ctx);
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	lmm_unlazy(w);
	if (lmm_barrier(d) || lmm_worker_offline(w))
		return 4;
	return lmm_domain_destroy(d) ? 5 : 0;
}

static atomic_bool churn_stop;

static void *churn_main(void *arg)
{
	enum lmm_scheme s = *(enum lmm_scheme *)arg;
	struct lmm_config cfg = { .scheme = s, .ops = &harness_ops };
	while (!atomic_load(&churn_stop)) {
		struct lmm_domain *d = NULL;
		if (lmm_domain_create(&cfg, &d) == 0)
			lmm_domain_destroy(d);
	}
	return NULL;
}

#ifdef LMM_HAVE_SHOOTDOWN
static int child_cycle_shootdown(void *arg)
{
	(void)arg;
	return child_cycle(LMM_SCHEME_SHOOTDOWN);
}

/* fork() while another thread is inside domain create/destroy (the signal table's lock). */
Test(edges, fork_while_creating_domains, .timeout = 120)
{
#ifdef LMM_TEST_TSAN
	/* fork() while other threads run is outside what TSan's runtime supports; ASan runs it. */
	cr_skip_test("TSan's runtime and fork() with other threads running: not reliable");
#endif
	enum lmm_scheme s = LMM_SCHEME_SHOOTDOWN;
	pthread_t t;
	atomic_store(&churn_stop, false);
	cr_assert_eq(pthread_create(&t, NULL, churn_main, &s), 0);
	for (int i = 0; i < 200; i++)
		in_child(child_cycle_shootdown, NULL, "child after a fork during create/destroy");
	atomic_store(&churn_stop, true);
	cr_assert_eq(pthread_join(t, NULL), 0);
}
#endif

#ifdef LMM_HAVE_RCU
/*
 * The same for rcu, whose reclaim thread registers with liburcu-qsbr (and
 * starts liburcu's call_rcu thread) from its first grace period on: a child
 * forked once that thread exists must be refused rcu
 * domains (-ENOTRECOVERABLE; liburcu's registry may have been copied locked,
 * or listing a reader the child does not have), never left to hang. Each
 * round runs in a fresh child (a process that never had an rcu domain), which
 * churns rcu domains and forks: first just after the first reclaim thread was
 * created (cfg.thread_create says when, and naps to hold the window open),
 * then a few times more during the churn.
 */
static atomic_bool rcu_thread_made;

static int slow_thread_create(pthread_t *t, void *(*start)(void *), void *arg, const char *name, void *user)
{
	(void)name, (void)user;
	int ret = pthread_create(t, NULL, start, arg);
	if (!ret && !atomic_exchange(&rcu_thread_made, true))
		nap_us(20000); /* the first domain's init is still running: the window */
	return ret;
}

static void *rcu_churn_main(void *arg)
{
	(void)arg;
	struct lmm_config cfg = { .scheme = LMM_SCHEME_RCU, .ops = &harness_ops, .thread_create = slow_thread_create };
	while (!atomic_load(&churn_stop)) {
		struct lmm_domain *d = NULL;
		if (lmm_domain_create(&cfg, &d) == 0)
			lmm_domain_destroy(d);
	}
	return NULL;
}

/* The grandchild: refused, or (had the fork come before the thread) a whole cycle. */
static int grandchild_rcu(void)
{
	alarm(10);
	struct lmm_config cfg = { .scheme = LMM_SCHEME_RCU, .ops = &harness_ops };
	struct lmm_domain *d = NULL;
	int ret = lmm_domain_create(&cfg, &d);
	if (ret == -ENOTRECOVERABLE)
		return 0;
	return ret ? 60 : 61; /* created: liburcu's state was copied from a process using it */
}

static int fork_during_rcu_create(void *arg)
{
	(void)arg;
	atomic_store(&rcu_thread_made, false);
	atomic_store(&churn_stop, false);
	pthread_t t;
	if (pthread_create(&t, NULL, rcu_churn_main, NULL))
		return 50;
	while (!atomic_load(&rcu_thread_made))
		nap_us(100);
	int bad = 0;
	for (int i = 0; i < 4 && !bad; i++) {
		pid_t pid = fork();
		if (pid == -1)
			return 51;
		if (pid == 0)
			_exit(grandchild_rcu());
		int status;
		if (waitpid(pid, &status, 0) != pid)
			return 52;
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			bad = WIFEXITED(status) ? WEXITSTATUS(status) : 70;
	}
	atomic_store(&churn_stop, true);
	pthread_join(t, NULL);
	return bad;
}

Test(edges, fork_while_creating_rcu_domains, .timeout = 120)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("TSan's runtime and fork() with other threads running: not reliable");
#endif
	if (getenv("LMM_TEST_QEMU")) /* set by .ci/run's qemu-user steps */
		cr_skip_test("qemu-user aborts in a child that starts threads after a multi-threaded fork");
	for (int i = 0; i < 20; i++)
		in_child(fork_during_rcu_create, NULL, "grandchild forked while its parent created rcu domains");
}
#endif

struct parent_state {
	struct lmm_domain *d[H_NSCHEMES];
	struct tctx *a[H_NSCHEMES];
	bool forked_rcu_expected_refused;
};

static int child_all_schemes(void *arg)
{
	struct parent_state *ps = arg;
	for (int i = 0; i < (int)H_NSCHEMES; i++) {
		enum lmm_scheme s = h_schemes[i];
		if (!lmm_scheme_available(s))
			continue;
		if (s == LMM_SCHEME_RCU && ps->forked_rcu_expected_refused) {
			struct lmm_config cfg = { .scheme = s, .ops = &harness_ops };
			struct lmm_domain *d = NULL;
			if (lmm_domain_create(&cfg, &d) != -ENOTRECOVERABLE)
				return 20;
			continue;
		}
		int ret = child_cycle(s);
		if (ret)
			return 30 + i * 10 + ret;
	}
	return 0;
}

/*
 * The parent has a domain of every scheme, each with a worker (the forking
 * thread one of them); the child creates, uses and destroys new domains of
 * every scheme. rcu: liburcu-qsbr's registry still lists the parent's reader
 * threads, which the child does not have, so rcu domains are refused there.
 */
Test(edges, fork_child_uses_new_domains, .timeout = 60)
{
	struct parent_state ps = { .forked_rcu_expected_refused = lmm_scheme_available(LMM_SCHEME_RCU) };
	struct h_idler idlers[H_NSCHEMES];
	int n = 0;
	for (int i = 0; i < (int)H_NSCHEMES; i++) {
		if (!lmm_scheme_available(h_schemes[i]))
			continue;
		ps.d[i] = h_domain(h_schemes[i], 0, 0);
		ps.a[i] = h_ctx(ps.d[i], true);
		idlers[n] = (struct h_idler){ .d = ps.d[i], .run_first = &ps.a[i]->ctx };
		h_idler_start(&idlers[n++]);
	}
	struct lmm_worker *self = h_online(ps.d[0]); /* the forking thread is a worker */
	lmm_switch(self, &ps.a[0]->ctx);
	in_child(child_all_schemes, &ps, "child using new domains");
	lmm_switch(self, NULL);
	cr_assert_eq(lmm_worker_offline(self), 0);
	for (int i = 0; i < n; i++)
		h_idler_stop(&idlers[i]);
	for (int i = 0; i < (int)H_NSCHEMES; i++) {
		if (!ps.d[i])
			continue;
		lmm_put(&ps.a[i]->ctx);
		finish(ps.d[i]);
	}
}

#ifdef LMM_HAVE_RCU
static int child_rcu_only(void *arg)
{
	(void)arg;
	return child_cycle(LMM_SCHEME_RCU);
}

/* A process that never made an rcu domain: its child may. */
Test(edges, fork_child_rcu_without_parent_rcu, .timeout = 60)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("TSan does not support threads started after a multi-threaded fork");
#endif
	if (getenv("LMM_TEST_QEMU")) /* set by .ci/run's qemu-user steps */
		cr_skip_test("qemu-user aborts in a child that starts threads after a multi-threaded fork");
	struct lmm_domain *d = h_domain(LMM_SCHEME_HAZARD, 0, 0);
	struct h_idler idler = { .d = d };
	h_idler_start(&idler);
	in_child(child_rcu_only, NULL, "child's rcu domain");
	h_idler_stop(&idler);
	finish(d);
}
#endif

/* ---------- the domain's signal number, for a runtime's own kick handler ---------- */

SCHEME_TEST(edges, domain_signo)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops };
	struct lmm_domain *d = NULL;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	cr_assert_eq(lmm_domain_signo(d), lmm_default_signo());
	cr_assert_eq(lmm_domain_destroy(d), 0);
	cfg.signo = SIGUSR1;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	cr_assert_eq(lmm_domain_signo(d), SIGUSR1);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* ---------- the reclaim engine's wake-up never outlives the domain ---------- */

/*
 * lmm_domain_destroy is allowed once no context is live and no free is
 * pending (lmm_domain_destroy(3)). So a thread whose deferred free was
 * queued must be done with the domain by the time another thread can see
 * that free run: the engine's kick (its sem_post) comes before its queue
 * lock is dropped. This program's sem_post stands in for libc's and, on
 * the thread that asked for it, waits 300 ms before posting: long enough
 * for the free, lmm_barrier and lmm_domain_destroy to happen meanwhile if
 * the kick came after the unlock. It then records that the domain was gone
 * and does not touch its memory.
 */
static _Thread_local bool kick_delayed;
static atomic_bool kick_waiting, kick_domain_gone, kick_after_destroy;

int sem_post(sem_t *s)
{
	static int (*real)(sem_t *);
	if (!real)
		real = (int (*)(sem_t *))dlsym(RTLD_NEXT, "sem_post");
	if (kick_delayed) {
		kick_delayed = false;
		atomic_store(&kick_waiting, true);
		h_nap_us(300 * 1000);
		if (atomic_load(&kick_domain_gone)) {
			atomic_store(&kick_after_destroy, true);
			return 0;
		}
	}
	return real(s);
}

static struct lmm_ctx *kick_blocker; /* its free hook holds the reclaim thread */
static atomic_bool kick_blocker_in, kick_blocker_go;

static void kick_block_free(struct lmm_ctx *c)
{
	if (c != kick_blocker)
		return;
	atomic_store(&kick_blocker_in, true);
	while (!atomic_load(&kick_blocker_go))
		h_nap_us(1000);
}

static void *kick_put(void *arg)
{
	kick_delayed = true; /* this thread's kick posts 300 ms late */
	lmm_put(arg);
	return NULL;
}

static void kick_inside_lock_common(enum lmm_scheme scheme)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("replaces sem_post, which TSan's runtime intercepts in the executable itself");
#endif
	struct lmm_domain *d = h_domain(scheme, LMM_F_DEFER_FREE, 0);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	kick_blocker = &a->ctx;
	h_free_extra = kick_block_free;
	lmm_put(&a->ctx); /* the reclaim thread runs a's free and waits there */
	while (!atomic_load(&kick_blocker_in))
		h_nap_us(1000);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, kick_put, &b->ctx), 0);
	while (!atomic_load(&kick_waiting)) /* b queued, its kick on its way */
		h_nap_us(1000);
	atomic_store(&kick_blocker_go, true);
	cr_assert_eq(lmm_barrier(d), 0); /* b's free is due: it waits for it */
	cr_assert_eq(atomic_load(&b->frees), 1);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	atomic_store(&kick_domain_gone, true);
	pthread_join(t, NULL);
	h_free_extra = NULL;
	cr_assert(!atomic_load(&kick_after_destroy),
		  "the thread that queued a deferred free used the domain after lmm_domain_destroy");
	free(a);
	free(b);
}

Test(edges, kick_inside_lock_refcount, .timeout = 60) { kick_inside_lock_common(LMM_SCHEME_REFCOUNT); }
#ifdef LMM_HAVE_HAZARD
Test(edges, kick_inside_lock_hazard, .timeout = 60) { kick_inside_lock_common(LMM_SCHEME_HAZARD); }
#endif
