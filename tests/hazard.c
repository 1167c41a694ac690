/* SPDX-License-Identifier: MIT */
/*
 * The hazard scheme's own races. Each race runs many times with
 * both threads spinning to line up, plus a random spin on each side so that
 * the two operations slide across each other. The harness hooks abort on a
 * free while installed, a double free or an install of a freed context; the
 * tests check that every context is freed exactly once and promptly.
 *
 * White-box (links the static library): one test puts a stale reference in a
 * drop slot by hand, which no public call can do deterministically.
 */

#include <criterion/criterion.h>
#include <sched.h>
#include <stdlib.h>

#include "harness.h"
#include "internal.h"

#define ROUNDS 3000

struct race {
	struct lmm_domain *d;
	atomic_uint arrived[2];
	struct tctx *a, *b;       /* this round's contexts */
	atomic_bool stop;
	unsigned seed[2];
	int variant;
	struct lmm_worker *w;
	atomic_ulong worker_thread;
};

static unsigned rnd(unsigned *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Both sides call this with the same round number; returns once both are there. */
static void line_up(struct race *r, int me, unsigned round)
{
	atomic_store(&r->arrived[me], round);
	unsigned spins = 0;
	while (atomic_load(&r->arrived[!me]) < round)
		if (++spins % 256 == 0)
			sched_yield(); /* two cores, shared: let the other side run */
}

/*
 * A random delay of up to a few microseconds: the last put's membarrier
 * takes about that long, and the worker's step must be able to land
 * anywhere from before it to after the scan.
 */
#define JITTER_SPAN 6000

static void jitter(struct race *r, int me)
{
	unsigned n = rnd(&r->seed[me]) % JITTER_SPAN;
	for (volatile unsigned i = 0; i < n; i++)
		;
}

/*
 * The worker's side of a race against a last put: on odd rounds, wait until
 * the put has taken users to 0 (white-box), then wait up to ~20us more, so
 * that the step lands inside the conversion (membarrier, then the scan)
 * rather than always before it.
 */
static void worker_jitter(struct race *r, struct tctx *t, unsigned round)
{
	if (round % 2) {
		unsigned spins = 0;
		while (atomic_load_explicit(&ctx_impl(&t->ctx)->users, memory_order_relaxed) > 0)
			if (++spins % 4096 == 0)
				sched_yield();
		unsigned n = rnd(&r->seed[1]) % (8 * JITTER_SPAN);
		for (volatile unsigned i = 0; i < n; i++)
			;
	} else {
		jitter(r, 1);
	}
}

static void check_freed_once(struct lmm_domain *d, struct tctx *t)
{
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&t->teardowns), 1);
	cr_assert_eq(atomic_load(&t->frees), 1, "context not freed once its holders left (frees %d)",
		     atomic_load(&t->frees));
}

static struct tctx *new_ctx(struct lmm_domain *d)
{
	return h_ctx(d, false);
}

/* ---- a worker leaving lazy mode while the last user converts its hazard ---- */

static void *leave_worker(void *arg)
{
	struct race *r = arg;
	struct lmm_worker *w = h_online(r->d);
	struct tctx *home = new_ctx(r->d); /* somewhere to go that is not init */
	for (unsigned round = 1; round <= ROUNDS; round++) {
		line_up(r, 1, 3 * round);
		struct tctx *a = r->a;
		lmm_switch(w, &a->ctx);
		lmm_switch(w, NULL);
		lmm_put(&a->ctx); /* our task exits: the other side holds the last user */
		line_up(r, 1, 3 * round + 1);
		worker_jitter(r, a, round);
		if (round % 2) {
			lmm_unlazy(w);
		} else {
			lmm_switch(w, &home->ctx);
			lmm_switch(w, NULL); /* lazy on home now */
		}
		line_up(r, 1, 3 * round + 2);
	}
	lmm_unlazy(w);
	lmm_put(&home->ctx);
	if (lmm_worker_offline(w))
		h_fail("offline");
	lmm_barrier(r->d);
	if (atomic_load(&home->frees) != 1)
		h_fail("home not freed");
	free(home);
	return NULL;
}

Test(hazard, leave_while_converting, .timeout = 60)
{
	struct race r = { .d = h_domain(LMM_SCHEME_HAZARD, 0, 0), .seed = { 1, 2 } };
	pthread_t t;
	pthread_create(&t, NULL, leave_worker, &r);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		r.a = new_ctx(r.d);
		lmm_get(&r.a->ctx); /* the worker's task's reference */
		line_up(&r, 0, 3 * round);
		line_up(&r, 0, 3 * round + 1);
		jitter(&r, 0);
		lmm_put(&r.a->ctx); /* last user: converts while the worker leaves */
		line_up(&r, 0, 3 * round + 2);
		check_freed_once(r.d, r.a);
		free(r.a);
	}
	pthread_join(t, NULL);
	struct lmm_stats st;
	lmm_stats(r.d, &st);
	cr_assert_eq(st.conversions, ROUNDS + 1);
	cr_assert_eq(lmm_domain_destroy(r.d), 0);
}

/* ---- a worker entering lazy mode on a count-only context while its last user leaves ---- */

static void *count_only_worker(void *arg)
{
	struct race *r = arg;
	struct lmm_worker *w = h_online(r->d);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		line_up(r, 1, 3 * round);
		struct tctx *a = r->a;
		lmm_switch(w, &a->ctx); /* a service worker, on a count reference */
		line_up(r, 1, 3 * round + 1);
		worker_jitter(r, a, round);
		lmm_switch(w, NULL);   /* races with the last put */
		lmm_drop(&a->ctx);     /* the task's count reference: the lazy hold must survive it */
		if (atomic_load(&a->canary) != TCTX_LIVE)
			h_fail("lazily held context freed");
		if (round % 2)
			lmm_unlazy(w);
		line_up(r, 1, 3 * round + 2);
	}
	lmm_unlazy(w);
	if (lmm_worker_offline(w))
		h_fail("offline");
	return NULL;
}

static void count_only_common(unsigned flags)
{
	struct race r = { .d = h_domain(LMM_SCHEME_HAZARD, flags, 0), .seed = { 3, 4 } };
	pthread_t t;
	pthread_create(&t, NULL, count_only_worker, &r);
	struct tctx *prev = NULL;
	for (unsigned round = 1; round <= ROUNDS; round++) {
		r.a = new_ctx(r.d);
		lmm_grab(&r.a->ctx); /* the service worker's count reference */
		line_up(&r, 0, 3 * round);
		line_up(&r, 0, 3 * round + 1);
		jitter(&r, 0);
		lmm_put(&r.a->ctx);
		line_up(&r, 0, 3 * round + 2);
		/* even rounds leave the worker lazy on a: freed when it moves to the next one */
		if (round % 2)
			check_freed_once(r.d, r.a);
		if (prev) {
			check_freed_once(r.d, prev);
			free(prev);
			prev = NULL;
		}
		if (round % 2)
			free(r.a);
		else
			prev = r.a;
	}
	pthread_join(t, NULL);
	if (prev) {
		check_freed_once(r.d, prev);
		free(prev);
	}
	cr_assert_eq(lmm_domain_destroy(r.d), 0);
}

Test(hazard, count_only_enter_while_last_put, .timeout = 60) { count_only_common(0); }
Test(hazard, count_only_enter_while_last_put_debug, .timeout = 60) { count_only_common(LMM_F_DEBUG); }

/* ---- a drop slot that is occupied when a second context is converted ---- */

/*
 * A worker goes lazy on a, then on b, while one thread converts a and another
 * b: a late hand-off of a meets b's conversion in the drop slot.
 */
struct three {
	struct race r;
	atomic_uint done_b;
};

static void *occupied_worker(void *arg)
{
	struct race *r = arg;
	struct lmm_worker *w = h_online(r->d);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		line_up(r, 1, 4 * round);
		struct tctx *a = r->a, *b = r->b;
		lmm_switch(w, &a->ctx);
		lmm_switch(w, NULL);
		lmm_put(&a->ctx);
		line_up(r, 1, 4 * round + 1);
		worker_jitter(r, a, round);
		lmm_switch(w, &b->ctx); /* leaves a while a is converted */
		lmm_switch(w, NULL);
		lmm_put(&b->ctx);
		line_up(r, 1, 4 * round + 2);
		lmm_unlazy(w);
		line_up(r, 1, 4 * round + 3);
	}
	if (lmm_worker_offline(w))
		h_fail("offline");
	return NULL;
}

static void *put_b_thread(void *arg)
{
	struct three *th = arg;
	struct race *r = &th->r;
	unsigned seed = 77;
	for (unsigned round = 1; round <= ROUNDS; round++) {
		unsigned spins = 0;
		while (atomic_load(&r->arrived[0]) < 4 * round + 1)
			if (++spins % 256 == 0)
				sched_yield();
		struct tctx *b = r->b;
		for (volatile unsigned i = 0, n = rnd(&seed) % JITTER_SPAN; i < n; i++)
			;
		lmm_put(&b->ctx);
		atomic_store(&th->done_b, round);
	}
	return NULL;
}

Test(hazard, occupied_drop_slot_race, .timeout = 60)
{
	struct three th = { .r = { .d = h_domain(LMM_SCHEME_HAZARD, 0, 0), .seed = { 5, 6 } } };
	struct race *r = &th.r;
	pthread_t t, tb;
	pthread_create(&t, NULL, occupied_worker, r);
	pthread_create(&tb, NULL, put_b_thread, &th);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		struct tctx *a = new_ctx(r->d), *b = new_ctx(r->d);
		lmm_get(&a->ctx);
		lmm_get(&b->ctx);
		r->a = a;
		r->b = b;
		line_up(r, 0, 4 * round);
		line_up(r, 0, 4 * round + 1);
		jitter(r, 0);
		lmm_put(&a->ctx);
		while (atomic_load(&th.done_b) < round)
			sched_yield();
		line_up(r, 0, 4 * round + 2);
		check_freed_once(r->d, a); /* the worker left a: nothing may keep it */
		line_up(r, 0, 4 * round + 3);
		check_freed_once(r->d, b);
		free(a);
		free(b);
	}
	pthread_join(t, NULL);
	pthread_join(tb, NULL);
	cr_assert_eq(lmm_domain_destroy(r->d), 0);
}

/* White-box: a stale reference sits in the drop slot when the worker's hazard is converted. */
Test(hazard, occupied_drop_slot_steal)
{
	struct lmm_domain *d = h_domain(LMM_SCHEME_HAZARD, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *stale = new_ctx(d), *b = new_ctx(d);

	lmm_grab(&stale->ctx);
	lmm_put(&stale->ctx); /* count-only now: our reference is the last */
	/* what a late hand-off leaves behind: the reference is the worker's now */
	atomic_store(&w->hot.hazard.drop, (uintptr_t)&stale->ctx);
	lmm_switch(w, &b->ctx);
	lmm_switch(w, NULL);
	lmm_put(&b->ctx); /* converts b: must take the stale one out and drop it */
	cr_assert_eq(atomic_load(&stale->frees), 1, "the stolen stale reference was dropped");
	cr_assert_neq(atomic_load(&stale->free_thread), 0);
	cr_assert_eq(atomic_load(&b->frees), 0, "b is lazily held");
	cr_assert_eq(atomic_load(&w->hot.hazard.drop), (uintptr_t)&b->ctx, "b handed over");
	lmm_unlazy(w);
	cr_assert_eq(atomic_load(&b->frees), 1, "the handed reference was the last one");
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(stale);
	free(b);
}

/* ---- the converted reference is the last one ---- */

struct last_args {
	struct lmm_domain *d;
	struct tctx *a;
	atomic_int phase;
	unsigned long self;
};

static void *last_worker(void *arg)
{
	struct last_args *l = arg;
	struct lmm_worker *w = h_online(l->d);
	l->self = (unsigned long)pthread_self();
	lmm_switch(w, &l->a->ctx);
	lmm_switch(w, NULL);
	lmm_put(&l->a->ctx);
	atomic_store(&l->phase, 1);
	while (atomic_load(&l->phase) != 2)
		sched_yield();
	lmm_unlazy(w); /* drops the handed reference: the final one */
	if (lmm_worker_offline(w))
		h_fail("offline");
	return NULL;
}

static void last_common(unsigned flags)
{
	struct last_args l = { .d = h_domain(LMM_SCHEME_HAZARD, flags, 0) };
	l.a = new_ctx(l.d);
	lmm_get(&l.a->ctx);
	pthread_t t;
	pthread_create(&t, NULL, last_worker, &l);
	while (atomic_load(&l.phase) != 1)
		sched_yield();
	lmm_put(&l.a->ctx);
	cr_assert_eq(lmm_barrier(l.d), 0);
	cr_assert_eq(atomic_load(&l.a->frees), 0, "held lazily by the worker");
	atomic_store(&l.phase, 2);
	pthread_join(t, NULL);
	cr_assert_eq(lmm_barrier(l.d), 0);
	cr_assert_eq(atomic_load(&l.a->frees), 1);
	unsigned long freer = atomic_load(&l.a->free_thread);
	if (flags & LMM_F_DEFER_FREE)
		cr_assert(freer != l.self && freer != (unsigned long)pthread_self(), "ran on the library thread");
	else
		cr_assert_eq(freer, l.self, "the worker's drop of the handed reference freed it");
	cr_assert_eq(lmm_domain_destroy(l.d), 0);
	free(l.a);
}

Test(hazard, converted_reference_is_last) { last_common(0); }
Test(hazard, converted_reference_is_last_deferred) { last_common(LMM_F_DEFER_FREE); }

/* Both orders at random: the worker's drop or the converter's is the last. */
static void *last_race_worker(void *arg)
{
	struct race *r = arg;
	struct lmm_worker *w = h_online(r->d);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		line_up(r, 1, 3 * round);
		struct tctx *a = r->a;
		lmm_switch(w, &a->ctx);
		lmm_switch(w, NULL);
		lmm_put(&a->ctx);
		line_up(r, 1, 3 * round + 1);
		worker_jitter(r, a, round);
		lmm_unlazy(w);
		line_up(r, 1, 3 * round + 2);
	}
	if (lmm_worker_offline(w))
		h_fail("offline");
	return NULL;
}

Test(hazard, converted_reference_is_last_race, .timeout = 60)
{
	struct race r = { .d = h_domain(LMM_SCHEME_HAZARD, LMM_F_DEBUG, 0), .seed = { 7, 8 } };
	pthread_t t;
	pthread_create(&t, NULL, last_race_worker, &r);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		r.a = new_ctx(r.d);
		lmm_get(&r.a->ctx);
		line_up(&r, 0, 3 * round);
		line_up(&r, 0, 3 * round + 1);
		jitter(&r, 0);
		lmm_put(&r.a->ctx);
		line_up(&r, 0, 3 * round + 2);
		check_freed_once(r.d, r.a);
		free(r.a);
	}
	pthread_join(t, NULL);
	cr_assert_eq(lmm_domain_destroy(r.d), 0);
}

/* ---- offline during conversion ---- */

static void *offline_worker(void *arg)
{
	struct race *r = arg;
	for (unsigned round = 1; round <= ROUNDS; round++) {
		struct lmm_worker *w = h_online(r->d); /* the same slot, reused every round */
		line_up(r, 1, 3 * round);
		struct tctx *a = r->a;
		lmm_switch(w, &a->ctx);
		lmm_switch(w, NULL);
		lmm_put(&a->ctx);
		line_up(r, 1, 3 * round + 1);
		worker_jitter(r, a, round);
		if (lmm_worker_offline(w))
			h_fail("offline");
		line_up(r, 1, 3 * round + 2);
	}
	return NULL;
}

Test(hazard, offline_during_conversion, .timeout = 60)
{
	struct race r = { .d = h_domain(LMM_SCHEME_HAZARD, 0, 0), .seed = { 9, 10 } };
	pthread_t t;
	pthread_create(&t, NULL, offline_worker, &r);
	for (unsigned round = 1; round <= ROUNDS; round++) {
		r.a = new_ctx(r.d);
		lmm_get(&r.a->ctx);
		line_up(&r, 0, 3 * round);
		line_up(&r, 0, 3 * round + 1);
		jitter(&r, 0);
		lmm_put(&r.a->ctx);
		line_up(&r, 0, 3 * round + 2);
		check_freed_once(r.d, r.a); /* nothing stranded in an offline worker's slot */
		free(r.a);
	}
	pthread_join(t, NULL);
	cr_assert_eq(lmm_domain_destroy(r.d), 0);
}

/* ---- the hidden cost shows in lmm_stats ---- */

Test(hazard, stats_show_conversions)
{
	struct lmm_domain *d = h_domain(LMM_SCHEME_HAZARD, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = new_ctx(d), *b = new_ctx(d);
	struct lmm_stats st;

	lmm_put(&b->ctx); /* never installed: a conversion that scans nothing */
	cr_assert_eq(lmm_stats(d, &st), 0);
	cr_assert_eq(st.conversions, 1);
	cr_assert_eq(st.slots_scanned, 0);
	cr_assert_eq(st.hazards_converted, 0);

	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_stats(d, &st), 0);
	cr_assert_eq(st.conversions, 2);
	cr_assert_eq(st.slots_scanned, 1);
	cr_assert_eq(st.hazards_converted, 1);
	cr_assert_eq(atomic_load(&a->frees), 0);
	lmm_unlazy(w);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
}
