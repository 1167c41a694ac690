/* SPDX-License-Identifier: MIT */
/*
 * lmm_membarrier: who gets the barrier (exactly the workers running the
 * context, in the signal fallback) and what it buys (the store-buffering
 * litmus between a task of the context using only compiler barriers and a
 * thread using lmm_membarrier, with workers switching in and out meanwhile).
 * Run it in a -Dmembarrier=false build too: that is the fallback.
 */

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

static void nap_us(long us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = us * 1000 };
	nanosleep(&ts, NULL);
}

static uint64_t signals_sent(struct lmm_domain *d)
{
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	return st.signals_sent;
}

Test(membarrier, bad_args)
{
	cr_assert_eq(lmm_membarrier(NULL), -EINVAL);
	struct lmm_ctx junk = { 0 };
	cr_assert_eq(lmm_membarrier(&junk), -EINVAL);
}

/* A worker thread parked in a given state (running a task of run, lazy, idle) until told to stop. */
struct puppet {
	struct lmm_domain *d;
	struct lmm_ctx *run;
	bool then_lazy;
	atomic_bool ready, stop;
	pthread_t thread;
};

static void *puppet_main(void *arg)
{
	struct puppet *p = arg;
	struct lmm_worker *w = h_online(p->d);
	if (p->run)
		lmm_switch(w, p->run);
	if (p->then_lazy)
		lmm_switch(w, NULL);
	atomic_store(&p->ready, true);
	while (!atomic_load(&p->stop))
		nap_us(500); /* asleep in the kernel: the fallback's signal must wake it */
	lmm_switch(w, NULL);
	if (lmm_worker_offline(w))
		h_fail("puppet: offline failed");
	return NULL;
}

static void puppet_start(struct puppet *p, struct lmm_domain *d, struct lmm_ctx *run, bool then_lazy)
{
	*p = (struct puppet){ .d = d, .run = run, .then_lazy = then_lazy };
	cr_assert_eq(pthread_create(&p->thread, NULL, puppet_main, p), 0);
	while (!atomic_load(&p->ready))
		nap_us(50);
}

static void puppet_stop(struct puppet *p)
{
	atomic_store(&p->stop, true);
	cr_assert_eq(pthread_join(p->thread, NULL), 0);
}

/*
 * The fallback's signal taken by something else (a sigwait of the
 * application's, or TSan's runtime, which drops one now and then): the
 * worker never acknowledges it, and must be signalled again rather than the
 * call failing with -ETIMEDOUT. Nothing to take under membarrier(2).
 */
struct swallower {
	struct lmm_domain *d;
	struct lmm_ctx *run;
	atomic_bool ready, stop, swallowed;
	pthread_t thread;
};

static void *swallower_main(void *arg)
{
	struct swallower *s = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, lmm_default_signo());
	struct lmm_worker *w = h_online(s->d); /* online refuses a thread that blocks it */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	lmm_switch(w, s->run);
	atomic_store(&s->ready, true);
	struct timespec ms = { 0, 1000000 };
	while (!atomic_load(&s->stop) && sigtimedwait(&set, NULL, &ms) != lmm_default_signo())
		;
	atomic_store(&s->swallowed, !atomic_load(&s->stop));
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!atomic_load(&s->stop))
		nap_us(500);
	lmm_switch(w, NULL);
	if (lmm_worker_offline(w))
		h_fail("swallower: offline failed");
	return NULL;
}

SCHEME_TEST(membarrier, lost_signal_sent_again)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false);
	struct swallower s = { .d = d, .run = &a->ctx };
	cr_assert_eq(pthread_create(&s.thread, NULL, swallower_main, &s), 0);
	while (!atomic_load(&s.ready))
		nap_us(50);
	uint64_t s0 = signals_sent(d);
	cr_assert_eq(lmm_membarrier(&a->ctx), 0, "the worker was not signalled again");
	if (signals_sent(d) != s0) { /* the fallback */
		cr_assert(atomic_load(&s.swallowed));
		cr_assert_geq(signals_sent(d) - s0, 2);
	}
	atomic_store(&s.stop, true);
	cr_assert_eq(pthread_join(s.thread, NULL), 0);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
}

/*
 * Exactly the workers whose current context is the argument: not the lazy
 * ones, not those on another context, not idle ones, not the caller.
 */
SCHEME_TEST(membarrier, targets)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false), *c = h_ctx(d, false);
	struct puppet on_a[2], lazy_a, on_b, idle;

	puppet_start(&on_a[0], d, &a->ctx, false);
	puppet_start(&on_a[1], d, &a->ctx, false);
	puppet_start(&lazy_a, d, &a->ctx, true);
	puppet_start(&on_b, d, &b->ctx, false);
	puppet_start(&idle, d, NULL, false);

	uint64_t s0 = signals_sent(d);
	cr_assert_eq(lmm_membarrier(&a->ctx), 0);
	uint64_t sent_a = signals_sent(d) - s0;
	bool fallback = sent_a != 0;
	cr_log_info("%s: lmm_membarrier uses %s", lmm_scheme_name(scheme),
		    fallback ? "signals (fallback)" : "membarrier(2)");
	if (fallback) {
		cr_assert_eq(sent_a, 2, "signals to the two workers running a, not %llu",
			     (unsigned long long)sent_a);
		s0 = signals_sent(d);
		cr_assert_eq(lmm_membarrier(&b->ctx), 0);
		cr_assert_eq(signals_sent(d) - s0, 1, "one worker runs b");
		s0 = signals_sent(d);
		cr_assert_eq(lmm_membarrier(&c->ctx), 0);
		cr_assert_eq(signals_sent(d) - s0, 0, "nobody runs c, nobody is signalled");
		cr_assert_eq(lmm_membarrier(lmm_init_ctx(d)), 0);
	}

	/* The caller itself running a: its own fences serve, no self-signal. */
	struct lmm_worker *self = h_online(d);
	lmm_switch(self, &a->ctx);
	s0 = signals_sent(d);
	cr_assert_eq(lmm_membarrier(&a->ctx), 0);
	if (fallback)
		cr_assert_eq(signals_sent(d) - s0, 2, "the caller skips itself");
	lmm_switch(self, NULL);
	cr_assert_eq(lmm_worker_offline(self), 0);

	puppet_stop(&on_a[0]);
	puppet_stop(&on_a[1]);
	puppet_stop(&lazy_a);
	puppet_stop(&on_b);
	puppet_stop(&idle);
	/* Offline workers are neither signalled nor waited for. */
	s0 = signals_sent(d);
	cr_assert_eq(lmm_membarrier(&a->ctx), 0);
	cr_assert_eq(signals_sent(d) - s0, 0);

	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	lmm_put(&c->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
	free(c);
}

/*
 * The store-buffering litmus. A task of ctx:   A[i] = k; compiler barrier; read B.
 * The writer:              B = r; lmm_membarrier(ctx); read A[i].
 * Forbidden: the task's read missed round r while the writer's read missed
 * iteration k. Workers only run iterations while ctx is current, and keep
 * leaving it (lazily, for another context, or for init) and coming back, so
 * calls race with switches in and out.
 */
#define LITMUS_WORKERS 2
#define LITMUS_ITERS (1u << 20)
#define LITMUS_ROUNDS (1u << 15)

struct litmus {
	struct lmm_domain *d;
	struct lmm_ctx *ctx, *other;
	atomic_uint a[LITMUS_WORKERS];
	atomic_uint b;
	atomic_bool stop;
	atomic_uint running;
	unsigned *seen_b[LITMUS_WORKERS]; /* seen_b[i][k]: B as read by worker i's iteration k */
	unsigned iters[LITMUS_WORKERS];
	unsigned (*seen_a)[LITMUS_WORKERS]; /* seen_a[r][i]: A[i] as read by the writer in round r */
};

struct litmus_arg {
	struct litmus *l;
	unsigned i;
};

static void *litmus_worker(void *arg)
{
	struct litmus_arg *la = arg;
	struct litmus *l = la->l;
	unsigned i = la->i, k = 0, seed = 77 + i;
	struct lmm_worker *w = h_online(l->d);

	atomic_fetch_add(&l->running, 1);
	while (!atomic_load_explicit(&l->stop, memory_order_relaxed) && k + 8 < LITMUS_ITERS) {
		lmm_switch(w, l->ctx);
		seed = seed * 1103515245u + 12345u;
		for (unsigned n = 1 + (seed >> 16) % 6; n; n--) {
			k++;
			/* Relaxed + a compiler barrier: the cheap side that lmm_membarrier upgrades. */
			atomic_store_explicit(&l->a[i], k, memory_order_relaxed);
			atomic_signal_fence(memory_order_seq_cst); /* pairs with the caller's lmm_membarrier */
			l->seen_b[i][k] = atomic_load_explicit(&l->b, memory_order_relaxed);
		}
		switch ((seed >> 8) % 3) {
		case 0: lmm_switch(w, NULL); break;          /* lazy on ctx */
		case 1: lmm_switch(w, l->other); break;      /* another context */
		default: lmm_switch(w, NULL); lmm_unlazy(w); /* init */
		}
	}
	l->iters[i] = k;
	lmm_switch(w, NULL);
	if (lmm_worker_offline(w))
		h_fail("litmus: offline failed");
	return NULL;
}

static double stress_seconds(void)
{
	const char *e = getenv("LMM_STRESS_SECONDS");
	return e ? atof(e) : 1.0;
}

SCHEME_TEST(membarrier, litmus)
{
	struct litmus *l = calloc(1, sizeof(*l));
	cr_assert_not_null(l);
	l->d = h_domain(scheme, 0, 0);
	struct tctx *ctx = h_ctx(l->d, false), *other = h_ctx(l->d, false);
	l->ctx = &ctx->ctx;
	l->other = &other->ctx;
	l->seen_a = calloc(LITMUS_ROUNDS, sizeof(*l->seen_a));
	cr_assert_not_null(l->seen_a);
	pthread_t t[LITMUS_WORKERS];
	struct litmus_arg args[LITMUS_WORKERS];
	for (unsigned i = 0; i < LITMUS_WORKERS; i++) {
		l->seen_b[i] = calloc(LITMUS_ITERS, sizeof(unsigned));
		cr_assert_not_null(l->seen_b[i]);
		args[i] = (struct litmus_arg){ l, i };
		cr_assert_eq(pthread_create(&t[i], NULL, litmus_worker, &args[i]), 0);
	}
	while (atomic_load(&l->running) < LITMUS_WORKERS)
		nap_us(50);

	unsigned long long budget_ns = (unsigned long long)(stress_seconds() * 0.5e9);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned r;
	for (r = 1; r < LITMUS_ROUNDS; r++) {
		atomic_store_explicit(&l->b, r, memory_order_relaxed);
		cr_assert_eq(lmm_membarrier(l->ctx), 0);
		for (unsigned i = 0; i < LITMUS_WORKERS; i++)
			l->seen_a[r][i] = atomic_load_explicit(&l->a[i], memory_order_relaxed);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((unsigned long long)(now.tv_sec - t0.tv_sec) * 1000000000ull + (unsigned long long)now.tv_nsec -
			    (unsigned long long)t0.tv_nsec > budget_ns)
			break;
	}
	unsigned rounds = r < LITMUS_ROUNDS ? r + 1 : LITMUS_ROUNDS;
	atomic_store(&l->stop, true);
	for (unsigned i = 0; i < LITMUS_WORKERS; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);

	unsigned violations = 0;
	for (unsigned rr = 1; rr < rounds; rr++) {
		for (unsigned i = 0; i < LITMUS_WORKERS; i++) {
			/* The first iteration the writer's read missed must have seen round rr. */
			unsigned k = l->seen_a[rr][i] + 1;
			if (k <= l->iters[i] && l->seen_b[i][k] < rr)
				violations++;
		}
	}
	cr_log_info("%s: %u rounds, %u + %u iterations, %u violations", lmm_scheme_name(scheme),
		    rounds - 1, l->iters[0], l->iters[1], violations);
	cr_assert_eq(violations, 0, "%u store-buffering outcomes lmm_membarrier should forbid", violations);

	lmm_put(l->ctx);
	lmm_put(l->other);
	cr_assert_eq(lmm_barrier(l->d), 0);
	cr_assert_eq(lmm_domain_destroy(l->d), 0);
	for (unsigned i = 0; i < LITMUS_WORKERS; i++)
		free(l->seen_b[i]);
	free(l->seen_a);
	free(ctx);
	free(other);
	free(l);
}
