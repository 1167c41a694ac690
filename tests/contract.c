/* SPDX-License-Identifier: MIT */
/*
 * The contract of include/lazymm.h, one test per rule, run for every scheme.
 * The harness hooks check the always-true rules (prev is what was installed,
 * never freed while installed, teardown and free exactly once) on every call.
 */

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

static struct lmm_stats stats_of(struct lmm_domain *d)
{
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	return st;
}

static void finish(struct lmm_domain *d)
{
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* --- names and configs (scheme-independent, run once) --- */

Test(contract, scheme_names)
{
	/* Every scheme the library names, built in or not (the enum is contiguous from 1). */
	for (enum lmm_scheme s = LMM_SCHEME_REFCOUNT, back; lmm_scheme_name(s); s++) {
		const char *name = lmm_scheme_name(s);
		cr_assert_eq(lmm_scheme_parse(name, &back), 0);
		cr_assert_eq(back, s);
	}
	cr_assert_str_eq(lmm_scheme_name(LMM_SCHEME_REFCOUNT), "refcount");
	cr_assert_str_eq(lmm_scheme_name(LMM_SCHEME_SHOOTDOWN), "shootdown");
	cr_assert_str_eq(lmm_scheme_name(LMM_SCHEME_HAZARD), "hazard");
	cr_assert_str_eq(lmm_scheme_name(LMM_SCHEME_RCU), "rcu");
	cr_assert_null(lmm_scheme_name((enum lmm_scheme)0));
	cr_assert_null(lmm_scheme_name((enum lmm_scheme)99));
	enum lmm_scheme out = LMM_SCHEME_HAZARD;
	cr_assert_eq(lmm_scheme_parse("epoch", &out), -EINVAL);
	cr_assert_eq(out, LMM_SCHEME_HAZARD, "a failed parse changes nothing");
	cr_assert_eq(lmm_scheme_parse(NULL, &out), -EINVAL);
	cr_assert_eq(lmm_scheme_parse("rcu", NULL), -EINVAL);
	cr_assert(lmm_scheme_available(LMM_SCHEME_REFCOUNT));
	cr_assert_not(lmm_scheme_available((enum lmm_scheme)0));
}

Test(contract, bad_configs)
{
	struct lmm_domain *d = (struct lmm_domain *)0x1;
	struct lmm_ops no_free = { .switch_ctx = harness_ops.switch_ctx, .teardown = harness_ops.teardown };
	struct lmm_config good = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &harness_ops };
	struct lmm_config c;

	cr_assert_eq(lmm_domain_create(NULL, &d), -EINVAL);
	cr_assert_eq(lmm_domain_create(&good, NULL), -EINVAL);
	c = good; c.ops = NULL;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	c = good; c.ops = &no_free;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	c = good; c.scheme = (enum lmm_scheme)0;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	c = good; c.scheme = (enum lmm_scheme)17;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	c = good; c.flags = 0x80;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	c = good; c.max_workers = LMM_MAX_WORKERS + 1;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	c = good; c.signo = -3;
	cr_assert_eq(lmm_domain_create(&c, &d), -EINVAL);
	cr_assert_eq(d, (struct lmm_domain *)0x1, "a failed create writes nothing");
	cr_assert_eq(lmm_domain_destroy(NULL), -EINVAL);
	cr_assert_eq(lmm_barrier(NULL), -EINVAL);
	cr_assert_eq(lmm_stats(NULL, NULL), -EINVAL);
	cr_assert_eq(lmm_ctx_init(NULL, NULL), -EINVAL);
	cr_assert_eq(lmm_worker_online(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(lmm_worker_offline(NULL), -EINVAL);
}

/* --- domains and contexts --- */

SCHEME_TEST(contract, domain_lifecycle)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	cr_assert_eq(lmm_domain_scheme(d), scheme);
	struct lmm_ctx *init = lmm_init_ctx(d);
	cr_assert_not_null(init);
	cr_assert_eq(lmm_ctx_domain(init), d);
	/* init is never freed, whatever is done to it */
	lmm_get(init); lmm_put(init); lmm_put(init); lmm_drop(init); lmm_drop(init);
	cr_assert_eq(lmm_ctx_init(d, init), -EINVAL);

	struct tctx *a = h_ctx(d, false);
	cr_assert_eq(lmm_domain_destroy(d), -EBUSY, "a live context keeps the domain");
	struct lmm_stats st = stats_of(d);
	cr_assert_eq(st.contexts_live, 1);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->teardowns), 1);
	cr_assert_eq(atomic_load(&a->frees), 1);
	st = stats_of(d);
	cr_assert_eq(st.contexts_live, 0);
	cr_assert_eq(st.teardowns, 1);
	cr_assert_eq(st.frees, 1);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
}

SCHEME_TEST(contract, two_counts)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false);

	lmm_get(&a->ctx);
	lmm_grab(&a->ctx);
	lmm_put(&a->ctx);
	cr_assert_eq(atomic_load(&a->teardowns), 0, "users still 1");
	lmm_put(&a->ctx);
	cr_assert_eq(atomic_load(&a->teardowns), 1, "last user tears down at once");
	cr_assert_not(lmm_get_not_zero(&a->ctx), "no users left");
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 0, "a count reference is still held");
	lmm_drop(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	finish(d);
	free(a);
}

SCHEME_TEST(contract, get_not_zero)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false);
	cr_assert(lmm_get_not_zero(&a->ctx));
	lmm_put(&a->ctx);
	lmm_put(&a->ctx);
	lmm_barrier(d);
	cr_assert_eq(atomic_load(&a->frees), 1);
	finish(d);
	free(a);
}

static void drop_other_common(enum lmm_scheme scheme, unsigned flags)
{
	struct lmm_domain *d = h_domain(scheme, flags, 0);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	/* b's users go away, but a's free holds b's count */
	lmm_grab(&b->ctx);
	lmm_put(&b->ctx);
	a->drop_on_free = &b->ctx;
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(atomic_load(&b->frees), 1, "the free that dropped b freed b");
	finish(d);
	free(a);
	free(b);
}

SCHEME_TEST(contract, free_drops_other) { drop_other_common(scheme, 0); }
SCHEME_TEST(contract, free_drops_other_deferred) { drop_other_common(scheme, LMM_F_DEFER_FREE); }

static struct lmm_domain *barrier_domain;
static atomic_int barrier_ret;
static void barrier_free(struct lmm_ctx *c)
{
	atomic_store(&barrier_ret, lmm_barrier(barrier_domain));
	atomic_store(&TCTX(c)->frees, 1);
}
static void nop_switch(struct lmm_worker *w, struct lmm_ctx *p, struct lmm_ctx *n, unsigned f) { (void)w; (void)p; (void)n; (void)f; }
static void nop_teardown(struct lmm_ctx *c) { (void)c; }

SCHEME_TEST(contract, barrier_inside_free)
{
	struct lmm_ops ops = { .switch_ctx = nop_switch, .teardown = nop_teardown, .free = barrier_free };
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops };
	cr_assert_eq(lmm_domain_create(&cfg, &barrier_domain), 0);
	struct tctx *a = calloc(1, sizeof(*a));
	cr_assert_eq(lmm_ctx_init(barrier_domain, &a->ctx), 0);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(barrier_domain), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(atomic_load(&barrier_ret), -EDEADLK);
	cr_assert_eq(lmm_domain_destroy(barrier_domain), 0);
	free(a);
}

/* --- workers --- */

SCHEME_TEST(contract, worker_online_offline)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_domain *d2 = h_domain(scheme, 0, 0);
	int token;
	struct lmm_worker *w = NULL, *w2 = NULL;
	cr_assert_eq(lmm_worker_online(d, &token, &w), 0);
	cr_assert_eq(lmm_worker_data(w), &token);
	cr_assert_eq(lmm_worker_self(), w);
	cr_assert_eq(lmm_active(w), lmm_init_ctx(d));
	cr_assert_null(lmm_current(w));
	cr_assert_eq(lmm_worker_online(d, NULL, &w2), -EEXIST);
	cr_assert_eq(lmm_worker_online(d2, NULL, &w2), -EEXIST, "one domain per thread");
	cr_assert_null(w2);
	cr_assert_eq(lmm_domain_destroy(d), -EBUSY, "an online worker keeps the domain");
	cr_assert_eq(stats_of(d).workers_online, 1);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_null(lmm_worker_self());
	cr_assert_eq(lmm_worker_online(d2, NULL, &w2), 0, "offline frees the thread");
	cr_assert_eq(lmm_worker_offline(w2), 0);
	finish(d);
	finish(d2);
}

struct slot_args { struct lmm_domain *d; int ret; atomic_bool go; atomic_bool done; };

static void *take_slot(void *arg)
{
	struct slot_args *a = arg;
	struct lmm_worker *w;
	a->ret = lmm_worker_online(a->d, NULL, &w);
	if (a->ret)
		return NULL;
	atomic_store(&a->done, true);
	while (!atomic_load(&a->go))
		;
	lmm_worker_offline(w);
	return NULL;
}

SCHEME_TEST(contract, worker_slots)
{
	struct lmm_domain *d = h_domain(scheme, 0, 2);
	struct slot_args a = { .d = d }, b = { .d = d }, c = { .d = d };
	pthread_t ta, tb;
	pthread_create(&ta, NULL, take_slot, &a);
	pthread_create(&tb, NULL, take_slot, &b);
	while (!atomic_load(&a.done) || !atomic_load(&b.done))
		;
	h_on_thread(take_slot, &c);
	cr_assert_eq(c.ret, -ENOSPC);
	atomic_store(&a.go, true);
	pthread_join(ta, NULL);
	/* the slot is free again and is reused */
	c.ret = 1;
	atomic_store(&c.go, true);
	h_on_thread(take_slot, &c);
	cr_assert_eq(c.ret, 0);
	atomic_store(&b.go, true);
	pthread_join(tb, NULL);
	finish(d);
}

static void *offline_foreign(void *arg)
{
	return (void *)(long)lmm_worker_offline(arg);
}

SCHEME_TEST(contract, offline_rules)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false);

	lmm_switch(w, &a->ctx);
	cr_assert_eq(lmm_worker_offline(w), -EBUSY, "a current context blocks offline");
	pthread_t t;
	void *ret;
	pthread_create(&t, NULL, offline_foreign, w);
	pthread_join(t, &ret);
	cr_assert_eq((long)ret, -EPERM);
	lmm_switch(w, NULL);
	long before = atomic_load(&harness_installs);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(atomic_load(&harness_installs), before + 1, "offline switched to init");
	cr_assert_eq(atomic_load(&a->installed), 0);
	/* the lazy hold is gone: the last put frees */
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	finish(d);
	free(a);
}

struct exit_args { struct lmm_domain *d; struct lmm_ctx *ctx; bool leave_current; };

static void *exit_without_offline(void *arg)
{
	struct exit_args *e = arg;
	struct lmm_worker *w = h_online(e->d);
	lmm_switch(w, e->ctx);
	if (!e->leave_current)
		lmm_switch(w, NULL);
	return NULL;
}

static void thread_exit_common(enum lmm_scheme scheme, bool leave_current)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false);
	struct exit_args e = { d, &a->ctx, leave_current };
	h_on_thread(exit_without_offline, &e);
	cr_assert_eq(stats_of(d).workers_online, 0, "thread exit took the worker offline");
	cr_assert_eq(atomic_load(&a->installed), 0);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	finish(d);
	free(a);
}

SCHEME_TEST(contract, thread_exit_lazy) { thread_exit_common(scheme, false); }
SCHEME_TEST(contract, thread_exit_current) { thread_exit_common(scheme, true); }

/* --- the switch path --- */

SCHEME_TEST(contract, switch_path)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	struct lmm_ctx *init = lmm_init_ctx(d);
	long n = atomic_load(&harness_installs);

	lmm_switch(w, NULL);
	cr_assert_eq(atomic_load(&harness_installs), n, "lazy on init installs nothing");
	lmm_switch(w, &a->ctx);
	cr_assert_eq(atomic_load(&harness_installs), n + 1);
	cr_assert_eq(lmm_active(w), &a->ctx);
	cr_assert_eq(lmm_current(w), &a->ctx);
	lmm_switch(w, &a->ctx);
	cr_assert_eq(atomic_load(&harness_installs), n + 1, "same context: nothing");
	lmm_switch(w, NULL);
	cr_assert_eq(lmm_active(w), &a->ctx, "kept lazily");
	cr_assert_null(lmm_current(w));
	lmm_switch(w, &a->ctx);
	cr_assert_eq(atomic_load(&harness_installs), n + 1, "the lazy hit installs nothing");
	lmm_switch(w, NULL);
	lmm_switch(w, &b->ctx);
	cr_assert_eq(atomic_load(&harness_installs), n + 2);
	cr_assert_eq(atomic_load(&a->installed), 0);
	cr_assert_eq(atomic_load(&b->installed), 1);
	lmm_switch(w, &a->ctx); /* task to task */
	cr_assert_eq(atomic_load(&harness_installs), n + 3);
	lmm_switch(w, NULL);
	lmm_unlazy(w);
	cr_assert_eq(lmm_active(w), init);
	cr_assert_eq(atomic_load(&harness_installs), n + 4);
	lmm_unlazy(w);
	cr_assert_eq(atomic_load(&harness_installs), n + 4, "unlazy on init: nothing");
	lmm_switch(w, init);
	cr_assert_eq(lmm_current(w), init);
	lmm_unlazy(w);
	cr_assert_eq(lmm_active(w), init, "unlazy leaves a current context alone");

	struct lmm_stats st = stats_of(d);
	cr_assert_eq(st.lazy_enters, 3);
	cr_assert_eq(st.lazy_hits, 1);
	cr_assert_eq(st.installs, 4);
	cr_assert_eq(st.unlazies, 1);
	cr_assert_eq(st.switches, 7);

	lmm_switch(w, NULL);
	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	cr_assert_eq(lmm_worker_offline(w), 0);
	finish(d);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(atomic_load(&b->frees), 1);
	free(a);
	free(b);
}

/*
 * Lazy hits are not counted on the fast path but derived (lib/internal.h,
 * worker_counters): check them while a lazy period is open, after it ends
 * either way, and once the worker's counters are folded in at offline.
 */
SCHEME_TEST(contract, stats_lazy_hits)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);

	lmm_switch(w, &a->ctx);
	for (int i = 0; i < 5; i++) {
		lmm_switch(w, NULL);
		cr_assert_eq(stats_of(d).lazy_hits, (uint64_t)i, "an open lazy period is not a hit");
		lmm_switch(w, &a->ctx);
		cr_assert_eq(stats_of(d).lazy_hits, (uint64_t)i + 1);
	}
	lmm_switch(w, NULL);
	lmm_switch(w, &b->ctx); /* ends the lazy period with an install */
	lmm_switch(w, NULL);
	lmm_unlazy(w);          /* and with an unlazy */
	struct lmm_stats st = stats_of(d);
	cr_assert_eq(st.lazy_enters, 7);
	cr_assert_eq(st.lazy_hits, 5);
	cr_assert_eq(st.switches, 7 + 5 + 3 - 1, "enters + hits + installs - unlazies");
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL); /* lazy at offline: offline's unlazy ends it */
	cr_assert_eq(lmm_worker_offline(w), 0);
	st = stats_of(d);
	cr_assert_eq(st.lazy_enters, 8);
	cr_assert_eq(st.lazy_hits, 5, "folded in at offline");
	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	finish(d);
	free(a);
	free(b);
}

/* The core case: the last user leaves while this worker holds the context lazily. */
SCHEME_TEST(contract, lazy_hold_outlives_users)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);

	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);            /* the task exited: last user */
	cr_assert_eq(atomic_load(&a->teardowns), 1);
	/* either still held lazily, or the scheme moved this worker off it first */
	if (lmm_active(w) == &a->ctx)
		cr_assert_eq(atomic_load(&a->frees), 0);
	lmm_switch(w, &b->ctx);
	lmm_switch(w, NULL);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1, "freed once the worker moved on");
	lmm_put(&b->ctx);
	lmm_unlazy(w);
	cr_assert_eq(lmm_worker_offline(w), 0);
	finish(d);
	cr_assert_eq(atomic_load(&b->frees), 1);
	free(a);
	free(b);
}

/* Same, but the last put comes from another thread while the worker sleeps lazily. */
SCHEME_TEST(contract, remote_last_put_while_idle)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false);
	struct h_idler idler = { .d = d, .run_first = &a->ctx };
	h_idler_start(&idler);
	lmm_put(&a->ctx);
	cr_assert_eq(atomic_load(&a->teardowns), 1);
	h_idler_stop(&idler); /* offline releases whatever hold remains */
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	finish(d);
	free(a);
}

/* kthread_use_mm: a service worker adopts a context on a count reference only. */
SCHEME_TEST(contract, service_worker_grab)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false);
	lmm_grab(&a->ctx);
	lmm_put(&a->ctx);               /* users gone: only our count reference */
	lmm_switch(w, &a->ctx);         /* use it anyway (the contract allows it) */
	lmm_switch(w, NULL);            /* unuse: kept lazily */
	lmm_drop(&a->ctx);
	lmm_unlazy(w);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(lmm_worker_offline(w), 0);
	finish(d);
	free(a);
}

SCHEME_TEST(contract, deferred_free_runs_elsewhere)
{
	struct lmm_domain *d = h_domain(scheme, LMM_F_DEFER_FREE, 0);
	struct tctx *a = h_ctx(d, false);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_neq(atomic_load(&a->free_thread), (unsigned long)pthread_self());
	cr_assert_eq(stats_of(d).frees_deferred, 1);
	finish(d);
	free(a);
}

SCHEME_TEST(contract, debug_domain_clean_run)
{
	struct lmm_domain *d = h_domain(scheme, LMM_F_DEBUG, 0);
	struct lmm_worker *w = h_online(d);
	for (int i = 0; i < 100; i++) {
		struct tctx *a = h_ctx(d, true);
		lmm_switch(w, &a->ctx);
		lmm_switch(w, NULL);
		lmm_put(&a->ctx);
	}
	lmm_unlazy(w);
	cr_assert_eq(lmm_worker_offline(w), 0);
	finish(d);
}

/* --- misuse that cannot be reported aborts, naming the call --- */

SCHEME_TEST_OPTS(contract, put_below_zero_aborts, .signal = SIGABRT, .timeout = 30)
{
	struct lmm_domain *d = h_domain(scheme, LMM_F_DEBUG, 0);
	struct tctx *a = h_ctx(d, false);
	lmm_grab(&a->ctx);
	lmm_put(&a->ctx);
	lmm_put(&a->ctx);
}

SCHEME_TEST_OPTS(contract, drop_below_zero_aborts, .signal = SIGABRT, .timeout = 30)
{
	struct lmm_domain *d = h_domain(scheme, LMM_F_DEBUG, 0);
	struct tctx *a = h_ctx(d, false);
	lmm_put(&a->ctx);
	lmm_barrier(d);
	lmm_drop(&a->ctx); /* freed: the memory is still ours, the context is not */
}

static void *switch_foreign(void *arg)
{
	lmm_switch(arg, NULL);
	return NULL;
}

SCHEME_TEST_OPTS(contract, foreign_switch_aborts, .signal = SIGABRT, .timeout = 30)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	h_on_thread(switch_foreign, w);
}

SCHEME_TEST_OPTS(contract, get_after_last_put_aborts, .signal = SIGABRT, .timeout = 30)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct tctx *a = h_ctx(d, false);
	lmm_grab(&a->ctx);
	lmm_put(&a->ctx);
	lmm_get(&a->ctx);
}

/*
 * A free that drops another context's last reference after lmm_barrier
 * flipped its epoch. The nested free is due before the barrier returns (it
 * became due inside a free the barrier waits for), so lmm_barrier's rule in
 * lazymm.h (every free due when it was called has run) covers it too:
 * registered in the new epoch, it would be missed.
 */
static atomic_int slow_frees;
static void slow_free(struct lmm_ctx *c)
{
	struct timespec ts = { 0, 30 * 1000 * 1000 };
	nanosleep(&ts, NULL); /* let the barrier flip and start waiting */
	struct lmm_ctx *other = TCTX(c)->drop_on_free;
	if (other)
		lmm_drop(other);
	atomic_fetch_add(&slow_frees, 1);
	atomic_store(&TCTX(c)->frees, 1);
}

SCHEME_TEST(contract, barrier_waits_for_frees_dropped_by_frees)
{
	struct lmm_ops ops = { .switch_ctx = nop_switch, .teardown = nop_teardown, .free = slow_free };
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops, .flags = LMM_F_DEFER_FREE };
	struct lmm_domain *d;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	struct tctx *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	cr_assert_eq(lmm_ctx_init(d, &a->ctx), 0);
	cr_assert_eq(lmm_ctx_init(d, &b->ctx), 0);
	lmm_grab(&b->ctx);
	lmm_put(&b->ctx);
	a->drop_on_free = &b->ctx;
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&slow_frees), 2, "b's free, due inside a's, ran before the barrier returned");
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
}
