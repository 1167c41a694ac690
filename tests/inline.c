/* SPDX-License-Identifier: MIT */
/*
 * lmm_switch built with LMM_INLINE (lazymm.h): the lazy hit and going lazy
 * inline in the caller, every other switch through the library. Each test
 * runs for every scheme: the same sequence through the inline macro and
 * through the library's lmm_switch ((lmm_switch)(...)) gives the same
 * lmm_stats; the one test (the worker's inline kind) is 0 wherever the
 * library's general copy must run (refcount, LMM_F_DEBUG, the membarrier
 * fallback, the idle bracket); a final put while lazy and a last put racing
 * a worker's inline round trips free exactly once, under the harness's
 * checking hooks.
 */
#define LMM_INLINE
#include <criterion/criterion.h>
#include <sched.h>
#include <stdlib.h>

#include "harness.h"

#if !defined(LMM_EXPECT_MEMBARRIER)
#error "tests/meson.build passes LMM_EXPECT_MEMBARRIER"
#endif

static unsigned char kind_of(struct lmm_worker *w)
{
	return lmm__inline_worker(w)->kind;
}

/* The inline kind a worker of @s has outside the idle bracket (0 under LMM_F_DEBUG). */
static void check_kind(struct lmm_worker *w, enum lmm_scheme s, unsigned flags)
{
	unsigned char k = kind_of(w);
	if (s == LMM_SCHEME_REFCOUNT || (flags & LMM_F_DEBUG)) {
		cr_assert_eq(k, 0, "%s%s: inline kind %u, not 0", lmm_scheme_name(s),
			     (flags & LMM_F_DEBUG) ? " (debug)" : "", k);
		return;
	}
	cr_assert(k == 0 || k == (unsigned char)s, "%s: inline kind %u", lmm_scheme_name(s), k);
	/* 0 only in the membarrier fallback (and under qemu-user, which may lack membarrier(2)). */
	if (LMM_EXPECT_MEMBARRIER && !getenv("LMM_TEST_QEMU"))
		cr_assert_eq(k, (unsigned char)s, "%s: inline kind %u with membarrier(2)", lmm_scheme_name(s), k);
}

static void sw(struct lmm_worker *w, struct lmm_ctx *c, bool inl)
{
	if (inl)
		lmm_switch(w, c); /* the macro: inline */
	else
		(lmm_switch)(w, c); /* the library's */
}

enum { TRIPS = 1000 };

/* Lazy round trips, installs, unlazy, the idle bracket; returns the domain's stats. */
static void sequence(enum lmm_scheme s, unsigned flags, bool inl, struct lmm_stats *out)
{
	struct lmm_domain *d = h_domain(s, flags, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	check_kind(w, s, flags);

	sw(w, &a->ctx, inl); /* install from init */
	for (unsigned i = 0; i < TRIPS; i++) {
		sw(w, NULL, inl); /* going lazy */
		sw(w, &a->ctx, inl); /* the lazy hit */
	}
	sw(w, NULL, inl);
	sw(w, NULL, inl); /* no change */
	sw(w, &b->ctx, inl); /* install from lazy */
	sw(w, &a->ctx, inl); /* task to task */
	sw(w, &a->ctx, inl); /* no change */
	sw(w, NULL, inl);
	lmm_unlazy(w);
	sw(w, NULL, inl);
	sw(w, lmm_init_ctx(d), inl); /* a task on init: lazy hit on init */
	sw(w, NULL, inl);
	sw(w, &b->ctx, inl);
	sw(w, NULL, inl);
	lmm_idle_enter(w);
	cr_assert_eq(kind_of(w), 0, "%s: inline kind %u inside the idle bracket", lmm_scheme_name(s), kind_of(w));
	lmm_idle_exit(w);
	check_kind(w, s, flags);
	for (unsigned i = 0; i < TRIPS; i++) {
		sw(w, &b->ctx, inl);
		sw(w, NULL, inl);
	}
	lmm_unlazy(w);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_stats(d, out), 0);
	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(atomic_load(&b->frees), 1);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
}

static void same_stats(enum lmm_scheme s, unsigned flags)
{
	struct lmm_stats lib, inl;
	sequence(s, flags, false, &lib);
	sequence(s, flags, true, &inl);
	const char *n = lmm_scheme_name(s);
	cr_assert_eq(inl.lazy_enters, lib.lazy_enters, "%s: lazy_enters %llu inline, %llu through the library", n,
		     (unsigned long long)inl.lazy_enters, (unsigned long long)lib.lazy_enters);
	cr_assert_eq(inl.lazy_hits, lib.lazy_hits, "%s: lazy_hits %llu inline, %llu through the library", n,
		     (unsigned long long)inl.lazy_hits, (unsigned long long)lib.lazy_hits);
	cr_assert_eq(inl.switches, lib.switches, "%s: switches %llu inline, %llu through the library", n,
		     (unsigned long long)inl.switches, (unsigned long long)lib.switches);
	cr_assert_eq(inl.installs, lib.installs);
	cr_assert_eq(inl.unlazies, lib.unlazies);
	cr_assert_geq(inl.lazy_enters, 2 * TRIPS);
	cr_assert_geq(inl.lazy_hits, 2 * TRIPS - 2);
	cr_assert_eq(inl.switches, inl.lazy_enters + inl.lazy_hits + inl.installs - inl.unlazies);
}

SCHEME_TEST(inline, round_trips_count_as_the_library)
{
	same_stats(scheme, 0);
}

SCHEME_TEST(inline, debug_workers_call_the_library)
{
	same_stats(scheme, LMM_F_DEBUG);
}

/* The last put while the worker is lazy on the context (hazard: a conversion; shootdown: the
 * caller unloads itself; rcu: a counted hold given back); the inline path goes on afterwards. */
SCHEME_TEST(inline, final_put_while_lazy)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	for (unsigned round = 0; round < 50; round++) {
		struct tctx *a = h_ctx(d, false);
		lmm_switch(w, &a->ctx);
		for (unsigned i = 0; i < 10; i++) {
			lmm_switch(w, NULL);
			lmm_switch(w, &a->ctx);
		}
		lmm_switch(w, NULL);
		lmm_put(&a->ctx); /* the last users reference: teardown, then the count's */
		cr_assert_eq(atomic_load(&a->teardowns), 1);
		cr_assert_eq(lmm_barrier(d), 0);
		if (round % 2)
			lmm_unlazy(w);
		lmm_switch(w, NULL);
		struct tctx *b = h_ctx(d, false);
		lmm_switch(w, &b->ctx); /* leaves whatever a's lazy hold became */
		lmm_switch(w, NULL);
		lmm_switch(w, &b->ctx);
		lmm_switch(w, NULL);
		lmm_unlazy(w);
		cr_assert_eq(lmm_barrier(d), 0);
		cr_assert_eq(atomic_load(&a->frees), 1, "%s: round %u: a freed %d times", lmm_scheme_name(scheme),
			     round, atomic_load(&a->frees));
		lmm_put(&b->ctx);
		cr_assert_eq(lmm_barrier(d), 0);
		cr_assert_eq(atomic_load(&b->frees), 1);
		free(a);
		free(b);
	}
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/*
 * A service worker on a count reference round-trips inline while another
 * thread drops the context's last users reference: under hazard the
 * conversion races the inline publish and the lazy hit (the counted hold,
 * a hand-off through the drop slot).
 */
struct race {
	struct lmm_domain *d;
	struct tctx *a;
	atomic_uint round, done;
};

enum { RACE_ROUNDS = 200, RACE_TRIPS = 2000 };

static void *race_worker(void *arg)
{
	struct race *r = arg;
	struct lmm_worker *w = h_online(r->d);
	for (unsigned round = 1; round <= RACE_ROUNDS; round++) {
		while (atomic_load(&r->round) != round)
			sched_yield();
		struct tctx *a = r->a;
		for (unsigned i = 0; i < RACE_TRIPS; i++) {
			lmm_switch(w, &a->ctx);
			lmm_switch(w, NULL);
		}
		if (atomic_load(&a->canary) != TCTX_LIVE)
			h_fail("a context freed under its count reference");
		lmm_unlazy(w);
		lmm_drop(&a->ctx); /* the service worker's count reference */
		atomic_store(&r->done, round);
	}
	if (lmm_worker_offline(w))
		h_fail("offline");
	return NULL;
}

SCHEME_TEST_OPTS(inline, last_put_races_inline_round_trips, .timeout = 120)
{
	struct race r = { .d = h_domain(scheme, 0, 0) };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, race_worker, &r), 0);
	for (unsigned round = 1; round <= RACE_ROUNDS; round++) {
		r.a = h_ctx(r.d, false);
		lmm_grab(&r.a->ctx); /* the service worker's count reference */
		atomic_store(&r.round, round);
		/*
		 * A delay that varies by round, so the last put lands at every point
		 * of the worker's round trip (volatile: the compiler keeps the
		 * empty loop).
		 */
		for (volatile unsigned spin = round % 64; spin; spin--)
			;
		lmm_put(&r.a->ctx);
		while (atomic_load(&r.done) != round)
			h_nap_us(10);
		cr_assert_eq(lmm_barrier(r.d), 0);
		cr_assert_eq(atomic_load(&r.a->frees), 1, "%s: round %u", lmm_scheme_name(scheme), round);
		cr_assert_eq(atomic_load(&r.a->teardowns), 1);
		free(r.a);
	}
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(lmm_domain_destroy(r.d), 0);
}
