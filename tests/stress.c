/* SPDX-License-Identifier: MIT */
/*
 * Stress: worker threads x contexts for a bounded time, doing everything the
 * contract allows at random: tasks of a context, lazy windows, task-to-task
 * switches, unlazy, idle, the last user leaving while others hold lazily,
 * contexts replaced, service workers on count references, offline/online,
 * threads that exit without going offline, lmm_barrier. The harness hooks
 * abort on any violation; at the end every context must have been torn down
 * and freed exactly once (ASan's leak check covers the memory).
 *
 * LMM_STRESS_SECONDS (default 1) sets the run time per scheme.
 */

#include <criterion/criterion.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

#define NSLOTS 6
#define NRUNNERS 3
#define OPS_PER_THREAD 2000

struct stress {
	struct lmm_domain *d;
	pthread_mutex_t lock[NSLOTS];
	struct tctx *slot[NSLOTS]; /* each slot holds a users reference */
	atomic_long created;
	atomic_bool stop;
	unsigned flags;
};

static unsigned rnd(unsigned *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static struct tctx *take(struct stress *st, unsigned i, bool users)
{
	pthread_mutex_lock(&st->lock[i]);
	struct tctx *t = st->slot[i];
	if (users)
		lmm_get(&t->ctx);
	else
		lmm_grab(&t->ctx);
	pthread_mutex_unlock(&st->lock[i]);
	return t;
}

static void replace(struct stress *st, unsigned i)
{
	struct tctx *n = h_ctx(st->d, true);
	atomic_fetch_add(&st->created, 1);
	pthread_mutex_lock(&st->lock[i]);
	struct tctx *old = st->slot[i];
	st->slot[i] = n;
	pthread_mutex_unlock(&st->lock[i]);
	lmm_put(&old->ctx);
}

static void touch(struct tctx *t)
{
	if (atomic_load(&t->canary) != TCTX_LIVE)
		h_fail("stress: running a task of a freed context");
}

struct runner {
	struct stress *st;
	unsigned seed;
};

static void *worker_main(void *arg)
{
	struct runner *r = arg;
	struct stress *st = r->st;
	struct lmm_worker *w = h_online(st->d);
	unsigned s = r->seed;

	for (int op = 0; op < OPS_PER_THREAD && !atomic_load(&st->stop); op++) {
		unsigned x = rnd(&s) % 100;
		unsigned i = rnd(&s) % NSLOTS;
		if (x < 45) {
			/* a task of slot i, maybe followed directly by another task */
			struct tctx *t = take(st, i, true);
			lmm_switch(w, &t->ctx);
			touch(t);
			if (rnd(&s) % 4 == 0) {
				struct tctx *u = take(st, rnd(&s) % NSLOTS, true);
				lmm_switch(w, &u->ctx);
				touch(u);
				lmm_put(&t->ctx);
				t = u;
			}
			lmm_switch(w, NULL);
			lmm_put(&t->ctx); /* may leave us the last, lazy holder */
		} else if (x < 60) {
			replace(st, i);
		} else if (x < 67) {
			/* service worker: count reference only (kthread_use_mm) */
			struct tctx *t = take(st, i, false);
			lmm_switch(w, &t->ctx);
			touch(t);
			lmm_switch(w, NULL);
			lmm_drop(&t->ctx);
		} else if (x < 75) {
			lmm_unlazy(w);
		} else if (x < 85) {
			lmm_idle_enter(w);
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
			lmm_idle_exit(w);
		} else if (x < 90) {
			if (lmm_worker_offline(w))
				h_fail("stress: offline failed");
			w = h_online(st->d);
		} else if (x < 92) {
			if (lmm_barrier(st->d))
				h_fail("stress: lmm_barrier failed");
		} else {
			lmm_switch(w, NULL);
		}
	}
	r->seed = s;
	if (rnd(&s) % 2 == 0) {
		lmm_switch(w, NULL);
		lmm_worker_offline(w);
	}
	/* else: exit without offline; the library takes the worker offline */
	return NULL;
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	while (!atomic_load(&r->st->stop)) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker_main, r))
			h_fail("stress: pthread_create");
		pthread_join(t, NULL);
	}
	return NULL;
}

static double stress_seconds(void)
{
	const char *e = getenv("LMM_STRESS_SECONDS");
	return e ? atof(e) : 1.0;
}

static void stress_common(enum lmm_scheme scheme, unsigned flags)
{
	struct stress st = { .flags = flags };
	st.d = h_domain(scheme, flags, 0);
	long frees0 = atomic_load(&harness_frees);
	for (unsigned i = 0; i < NSLOTS; i++) {
		pthread_mutex_init(&st.lock[i], NULL);
		st.slot[i] = h_ctx(st.d, true);
		atomic_fetch_add(&st.created, 1);
	}
	struct runner r[NRUNNERS];
	pthread_t t[NRUNNERS];
	for (unsigned i = 0; i < NRUNNERS; i++) {
		r[i] = (struct runner){ &st, 0x9e3779b9u * (i + 1) };
		pthread_create(&t[i], NULL, runner_main, &r[i]);
	}
	/* a non-worker thread replaces contexts too: last puts from outside */
	unsigned s = 12345;
	struct timespec end, now;
	clock_gettime(CLOCK_MONOTONIC, &end);
	double secs = stress_seconds();
	end.tv_sec += (time_t)secs;
	end.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
	do {
		replace(&st, rnd(&s) % NSLOTS);
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
	atomic_store(&st.stop, true);
	for (unsigned i = 0; i < NRUNNERS; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < NSLOTS; i++)
		lmm_put(&st.slot[i]->ctx);
	cr_assert_eq(lmm_barrier(st.d), 0);
	struct lmm_stats sts;
	lmm_stats(st.d, &sts);
	long created = atomic_load(&st.created);
	cr_assert_eq(atomic_load(&harness_frees) - frees0, created,
		     "every context freed exactly once: %ld of %ld", atomic_load(&harness_frees) - frees0, created);
	cr_assert_eq(sts.teardowns, (uint64_t)created);
	cr_assert_eq(sts.frees, (uint64_t)created);
	cr_assert_eq(sts.contexts_live, 0);
	cr_assert_eq(sts.workers_online, 0);
	cr_assert_gt(sts.lazy_enters, 0);
	cr_log_info("%s: %ld contexts, %llu switches, %llu lazy hits, %llu installs",
		    lmm_scheme_name(scheme), created, (unsigned long long)sts.switches,
		    (unsigned long long)sts.lazy_hits, (unsigned long long)sts.installs);
	cr_assert_eq(lmm_domain_destroy(st.d), 0);
}

SCHEME_TEST_OPTS(stress, stress, .timeout = 300) { stress_common(scheme, 0); }
SCHEME_TEST_OPTS(stress, stress_deferred_debug, .timeout = 300) { stress_common(scheme, LMM_F_DEFER_FREE | LMM_F_DEBUG); }

/*
 * Going lazy and the lazy hit run outside the critical section that defers
 * the domain's signal handler (lib/switch.c says why that is safe). Land the
 * handler at every point of them: one worker does lazy round trips on a live
 * context while this thread signals it as fast as it can. Under rcu each
 * landing while lazy counts the hold and the next hit must give that count
 * back, to the same context even when a task-to-task switch comes first; a
 * lost one leaks the context, a doubled one frees it early (the harness hooks
 * abort on a free while installed).
 */
struct signalled {
	struct lmm_domain *d;
	struct lmm_ctx *ctx, *other;
	pthread_t thread;
	atomic_bool online, stop;
	long round_trips;
};

static void *round_tripper(void *arg)
{
	struct signalled *sg = arg;
	struct lmm_worker *w = h_online(sg->d);
	lmm_switch(w, sg->ctx);
	atomic_store(&sg->online, true);
	while (!atomic_load_explicit(&sg->stop, memory_order_relaxed)) {
		/* Each hit is followed by a task-to-task switch: a hold counted on one context must not follow us to the other. */
		lmm_switch(w, NULL);
		lmm_switch(w, sg->ctx);
		lmm_switch(w, sg->other);
		lmm_switch(w, NULL);
		lmm_switch(w, sg->other);
		lmm_switch(w, sg->ctx);
		sg->round_trips += 2;
	}
	lmm_switch(w, NULL);
	cr_assert_eq(lmm_worker_offline(w), 0);
	return NULL;
}

SCHEME_TEST(stress, lazy_fast_path_under_signals)
{
	if (scheme != LMM_SCHEME_SHOOTDOWN && scheme != LMM_SCHEME_RCU)
		cr_skip_test("%s installs no signal handler", lmm_scheme_name(scheme));
#ifdef LMM_TEST_TSAN
	cr_skip_test("signal delivery under TSan: open finding, see docs/reliability.md");
#endif
	struct signalled sg = { .d = h_domain(scheme, 0, 0) };
	struct tctx *a = h_ctx(sg.d, false), *b = h_ctx(sg.d, false);
	sg.ctx = &a->ctx;
	sg.other = &b->ctx;
	pthread_create(&sg.thread, NULL, round_tripper, &sg);
	while (!atomic_load(&sg.online))
		sched_yield();
	for (int i = 0; i < 50000; i++)
		cr_assert_eq(pthread_kill(sg.thread, lmm_default_signo()), 0);
	atomic_store(&sg.stop, true);
	pthread_join(sg.thread, NULL);
	cr_log_info("%s: 50000 signals during %ld lazy round trips", lmm_scheme_name(scheme), sg.round_trips);
	cr_assert_eq(atomic_load(&a->frees) + atomic_load(&b->frees), 0);
	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	cr_assert_eq(lmm_barrier(sg.d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1, "each context is freed exactly once");
	cr_assert_eq(atomic_load(&b->frees), 1, "each context is freed exactly once");
	cr_assert_eq(lmm_domain_destroy(sg.d), 0);
	free(a);
	free(b);
}
