/* SPDX-License-Identifier: MIT */
/*
 * The rcu scheme's own rules (docs/rcu.md): frees wait for a grace period,
 * workers that never end a lazy window are nudged, lmm_barrier works from a
 * lazy worker, the backlog is bounded, and an application using liburcu
 * itself keeps working. No test asserts a timing: the nudge delays are only
 * chosen so that a missing mechanism turns into a timeout of lmm_barrier.
 */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <urcu/urcu-memb.h>

#include "harness.h"

/* lazymm owns the QSBR flavour; the application side here uses memb. */
extern void urcu_qsbr_register_thread(void);
extern void urcu_qsbr_unregister_thread(void);

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static struct lmm_domain *rcu_domain(unsigned flags, const char *nudge_ms, const char *backlog)
{
	if (nudge_ms)
		setenv("LMM_RCU_NUDGE_MS", nudge_ms, 1);
	if (backlog)
		setenv("LMM_RCU_BACKLOG_MAX", backlog, 1);
	struct lmm_config cfg = { .scheme = LMM_SCHEME_RCU, .ops = &harness_ops, .flags = flags,
				  .timeout_ms = 5000 };
	struct lmm_domain *d = NULL;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	unsetenv("LMM_RCU_NUDGE_MS");
	unsetenv("LMM_RCU_BACKLOG_MAX");
	return d;
}

static struct lmm_stats stats_of(struct lmm_domain *d)
{
	struct lmm_stats st;
	cr_assert_eq(lmm_stats(d, &st), 0);
	return st;
}

/* A worker that runs one task of ctx, then stays lazy on it doing `mode`. */
enum lazy_mode { BUSY_CONTEXTLESS, SLEEP_NO_IDLE, ONLINE_SLEEPER };

struct lazy_worker {
	struct lmm_domain *d;
	struct lmm_ctx *ctx;
	enum lazy_mode mode;
	atomic_bool ready, stop;
	_Atomic(struct lmm_ctx *) final_active;
	pthread_t thread;
};

static void *lazy_worker_main(void *arg)
{
	struct lazy_worker *t = arg;
	struct lmm_worker *w = h_online(t->d);
	if (t->ctx) {
		lmm_switch(w, t->ctx);
		lmm_switch(w, NULL);
	}
	atomic_store(&t->ready, true);
	while (!atomic_load(&t->stop)) {
		if (t->mode == BUSY_CONTEXTLESS) {
			/* context-less tasks, back to back: no lazy window ever ends */
			lmm_switch(w, NULL);
			for (volatile int i = 0; i < 1000; i++)
				;
		} else {
			nap_ms(20); /* a nudge cuts it short (EINTR): fine */
		}
	}
	atomic_store(&t->final_active, lmm_active(w));
	lmm_switch(w, NULL);
	if (lmm_worker_offline(w))
		h_fail("lazy worker: offline failed");
	return NULL;
}

static void lazy_worker_start(struct lazy_worker *t)
{
	cr_assert_eq(pthread_create(&t->thread, NULL, lazy_worker_main, t), 0);
	while (!atomic_load(&t->ready))
		nap_ms(1);
}

static void lazy_worker_stop(struct lazy_worker *t)
{
	atomic_store(&t->stop, true);
	cr_assert_eq(pthread_join(t->thread, NULL), 0);
}

static void dying_under_lazy_worker(enum lazy_mode mode)
{
	struct lmm_domain *d = rcu_domain(LMM_F_DEBUG, "10", NULL);
	struct tctx *a = h_ctx(d, false);
	struct lazy_worker t = { .d = d, .ctx = &a->ctx, .mode = mode };
	lazy_worker_start(&t);
	lmm_put(&a->ctx); /* the worker is now the last, uncounted, lazy holder */
	cr_assert_eq(lmm_barrier(d), 0, "the free went through while the worker stayed busy");
	cr_assert_eq(atomic_load(&a->frees), 1);
	struct lmm_stats st = stats_of(d);
	cr_assert_geq(st.rcu_stalls, 1);
	cr_assert_geq(st.rcu_nudges, 1);
	cr_assert_geq(st.grace_periods, 1);
	lazy_worker_stop(&t);
	cr_assert_eq(atomic_load(&t.final_active), lmm_init_ctx(d), "the nudge moved it to init");
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
}

/* A context dies while a worker lazy on it keeps running context-less tasks. */
Test(rcu, dying_while_running_contextless_tasks, .timeout = 30)
{
	dying_under_lazy_worker(BUSY_CONTEXTLESS);
}

/* A context dies while a worker lazy on it sleeps without lmm_idle_enter. */
Test(rcu, dying_while_sleeping_without_idle, .timeout = 30)
{
	dying_under_lazy_worker(SLEEP_NO_IDLE);
}

/*
 * lmm_barrier from a worker lazy on a live context. Nudges are too slow to
 * help (10 s) and lmm_barrier gives up after 5 s: only barrier_wait taking
 * this worker offline lets the grace period end.
 */
Test(rcu, barrier_from_lazy_worker, .timeout = 30)
{
	struct lmm_domain *d = rcu_domain(LMM_F_DEBUG, "10000", NULL);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);

	lmm_switch(w, &b->ctx);
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);           /* lazy on live a */
	lmm_put(&b->ctx);              /* b dies */
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&b->frees), 1);
	cr_assert_eq(atomic_load(&a->frees), 0);
	cr_assert_eq(lmm_active(w), &a->ctx, "still lazy on a: its hold became counted");
	lmm_switch(w, &a->ctx);        /* the lazy hit gives the counted hold back */
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);              /* a dies while we are lazy on it */
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(lmm_active(w), lmm_init_ctx(d), "left the dying context before quiescing");
	cr_assert_eq(stats_of(d).rcu_nudges, 0);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
}

/* Idle workers never hold a grace period up, lazy or not. */
Test(rcu, idle_worker_lets_frees_through, .timeout = 30)
{
	struct lmm_domain *d = rcu_domain(0, "10000", NULL);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	struct h_idler idler = { .d = d, .run_first = &a->ctx };
	h_idler_start(&idler);
	lmm_put(&b->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&b->frees), 1);
	/* a's hold on the idler was counted: it goes at the idler's next wake-up */
	lmm_put(&a->ctx);
	for (int i = 0; i < 10000 && !atomic_load(&a->frees); i++) {
		cr_assert_eq(lmm_barrier(d), 0);
		nap_ms(1);
	}
	cr_assert_eq(atomic_load(&a->frees), 1, "freed while the idler still runs");
	cr_assert_eq(stats_of(d).rcu_nudges, 0);
	h_idler_stop(&idler);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
}

/* A flood of frees while grace periods are slow: droppers are held back. */
Test(rcu, flood_backlog_bounded, .timeout = 60)
{
	struct lmm_domain *d = rcu_domain(0, "5", "32");
	struct lazy_worker t = { .d = d, .mode = ONLINE_SLEEPER };
	lazy_worker_start(&t); /* online, never quiescent on its own */
	long frees0 = atomic_load(&harness_frees);
	const int n = 1000;
	for (int i = 0; i < n; i++)
		lmm_put(&h_ctx(d, true)->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&harness_frees) - frees0, n);
	struct lmm_stats st = stats_of(d);
	cr_assert_leq(st.rcu_backlog_max, 32, "backlog reached %llu", (unsigned long long)st.rcu_backlog_max);
	cr_assert_eq(st.rcu_backlog, 0);
	cr_assert_geq(st.grace_periods, n / 32);
	lazy_worker_stop(&t);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* --- coexistence with an application that uses liburcu (memb) --- */

#define APP_CANARY 0x5eedu

struct app_obj {
	struct rcu_head head;
	unsigned canary;
	unsigned long gen;
};

static struct app_obj *app_shared;
static atomic_long app_callbacks;

static void app_obj_free(struct rcu_head *h)
{
	struct app_obj *o = caa_container_of(h, struct app_obj, head);
	o->canary = 0;
	free(o);
	atomic_fetch_add(&app_callbacks, 1);
}

struct coexist {
	struct lmm_domain *d;
	struct tctx *ctx[2];
	atomic_bool stop;
	atomic_long reads, updates;
};

static void *app_reader_worker(void *arg)
{
	struct coexist *c = arg;
	urcu_memb_register_thread();
	struct lmm_worker *w = h_online(c->d);
	unsigned i = 0;
	while (!atomic_load(&c->stop)) {
		urcu_memb_read_lock();
		struct app_obj *o = rcu_dereference(app_shared);
		/* lazymm switches, lazy windows and idle inside the app's read section */
		lmm_switch(w, &c->ctx[i & 1]->ctx);
		lmm_switch(w, NULL);
		if (i % 64 == 0) {
			lmm_idle_enter(w);
			lmm_idle_exit(w);
		}
		if (o->canary != APP_CANARY)
			h_fail("coexist: the application's object was freed under its reader");
		urcu_memb_read_unlock();
		atomic_fetch_add(&c->reads, 1);
		i++;
	}
	lmm_unlazy(w);
	lmm_worker_offline(w);
	urcu_memb_unregister_thread();
	return NULL;
}

static void *app_updater(void *arg)
{
	struct coexist *c = arg;
	urcu_memb_register_thread();
	for (unsigned long gen = 1; !atomic_load(&c->stop); gen++) {
		struct app_obj *n = calloc(1, sizeof(*n));
		n->canary = APP_CANARY;
		n->gen = gen;
		struct app_obj *old = rcu_xchg_pointer(&app_shared, n);
		if (gen % 2)
			urcu_memb_call_rcu(&old->head, app_obj_free);
		else {
			urcu_memb_synchronize_rcu();
			old->canary = 0;
			free(old);
		}
		atomic_fetch_add(&c->updates, 1);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

Test(rcu, application_uses_liburcu_memb, .timeout = 60)
{
	struct coexist c = { .d = rcu_domain(LMM_F_DEBUG, NULL, NULL) };
	app_shared = calloc(1, sizeof(*app_shared));
	app_shared->canary = APP_CANARY;
	c.ctx[0] = h_ctx(c.d, false);
	c.ctx[1] = h_ctx(c.d, false);
	pthread_t r[2], u;
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&r[i], NULL, app_reader_worker, &c), 0);
	cr_assert_eq(pthread_create(&u, NULL, app_updater, &c), 0);
	/* lazymm frees in the meantime: contexts that die under lazy workers */
	long frees0 = atomic_load(&harness_frees);
	for (int i = 0; i < 200; i++) {
		struct tctx *t = h_ctx(c.d, true);
		lmm_put(&t->ctx);
		if (i % 50 == 0)
			cr_assert_eq(lmm_barrier(c.d), 0);
		nap_ms(1);
	}
	cr_assert_eq(lmm_barrier(c.d), 0);
	cr_assert_eq(atomic_load(&harness_frees) - frees0, 200);
	atomic_store(&c.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	pthread_join(u, NULL);
	cr_assert_gt(atomic_load(&c.reads), 0);
	cr_assert_gt(atomic_load(&c.updates), 0);
	urcu_memb_barrier(); /* the application's call_rcu callbacks ran */
	lmm_put(&c.ctx[0]->ctx);
	lmm_put(&c.ctx[1]->ctx);
	cr_assert_eq(lmm_barrier(c.d), 0);
	cr_assert_eq(lmm_domain_destroy(c.d), 0);
	free(app_shared);
	free(c.ctx[0]);
	free(c.ctx[1]);
}

/* A thread that already is an online QSBR reader cannot become a worker. */
Test(rcu, qsbr_reader_refused_as_worker, .timeout = 30)
{
	struct lmm_domain *d = rcu_domain(0, NULL, NULL);
	struct lmm_worker *w = NULL;
	urcu_qsbr_register_thread();
	cr_assert_eq(lmm_worker_online(d, NULL, &w), -EBUSY);
	cr_assert_null(lmm_worker_self());
	urcu_qsbr_unregister_thread();
	cr_assert_eq(lmm_worker_online(d, NULL, &w), 0);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/*
 * A worker that only ever switches task to task (never lazy,
 * never idle) must still report quiescence at its switches, or every grace
 * period waits for the stall nudge. The nudge delay is set far beyond the
 * barrier's timeout, so a missing report shows as -ETIMEDOUT and a nudge.
 */
struct hopper {
	struct lmm_domain *d;
	struct lmm_ctx *a, *b;
	atomic_bool ready, stop;
};

static void *hop_main(void *arg)
{
	struct hopper *h = arg;
	struct lmm_worker *w = h_online(h->d);
	lmm_switch(w, h->a);
	atomic_store(&h->ready, true);
	while (!atomic_load(&h->stop)) {
		lmm_switch(w, h->b);
		lmm_switch(w, h->a);
	}
	lmm_switch(w, NULL);
	lmm_unlazy(w);
	lmm_worker_offline(w);
	return NULL;
}

Test(rcu, task_to_task_switches_report_quiescence, .timeout = 60)
{
	struct lmm_domain *d = rcu_domain(0, "60000", NULL);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false), *c = h_ctx(d, false);
	struct hopper h = { .d = d, .a = &a->ctx, .b = &b->ctx };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, hop_main, &h), 0);
	while (!atomic_load(&h.ready))
		nap_ms(1);
	lmm_put(&c->ctx); /* needs a grace period, so the hopper must report */
	cr_assert_eq(lmm_barrier(d), 0, "the grace period ended without a nudge");
	cr_assert_eq(atomic_load(&c->frees), 1);
	cr_assert_eq(stats_of(d).rcu_nudges, 0);
	atomic_store(&h.stop, true);
	pthread_join(t, NULL);
	lmm_put(&a->ctx);
	lmm_put(&b->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
	free(c);
}
