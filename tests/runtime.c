/* SPDX-License-Identifier: MIT */
/*
 * The runtime owns the side effects: tunables are validated config fields,
 * a domain can run with no library thread (lmm_poll), the library's threads
 * are created through the runtime's hook and named, and an rcu worker that
 * reports quiescent states itself (lmm_quiescent) is never nudged.
 * Public API only (tests/harness.c).
 */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static void nap_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

static int create(struct lmm_config *cfg, struct lmm_domain **d)
{
	cfg->ops = &harness_ops;
	return lmm_domain_create(cfg, d);
}

/* ---------- tunables ---------- */

SCHEME_TEST(runtime, tunables_validated)
{
	struct lmm_domain *d = NULL;
	struct lmm_config cfg = { .scheme = scheme, .rcu_nudge_ms = 100001 };
	cr_assert_eq(create(&cfg, &d), -EINVAL);
	cfg = (struct lmm_config){ .scheme = scheme, .rcu_backlog_max = (1u << 30) + 1 };
	cr_assert_eq(create(&cfg, &d), -EINVAL);
	cfg = (struct lmm_config){ .scheme = scheme, .rcu_nudge_ms = 5, .rcu_backlog_max = 10 };
	cr_assert_eq(create(&cfg, &d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	static const char *const bad[] = { "abc", "0", "-5", "12x", "100001" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("LMM_RCU_NUDGE_MS", bad[i], 1);
		cr_assert_eq(create(&cfg, &d), -EINVAL, "LMM_RCU_NUDGE_MS=%s accepted", bad[i]);
	}
	setenv("LMM_RCU_NUDGE_MS", "50", 1);
	setenv("LMM_RCU_BACKLOG_MAX", "x", 1);
	cr_assert_eq(create(&cfg, &d), -EINVAL, "LMM_RCU_BACKLOG_MAX=x accepted");
	unsetenv("LMM_RCU_BACKLOG_MAX");
	cr_assert_eq(create(&cfg, &d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	unsetenv("LMM_RCU_NUDGE_MS");
}

/* ---------- threads ---------- */

/*
 * Threads of this process whose name starts with "lmm-", but those named
 * except (NULL: none excepted). liburcu's call_rcu thread inherits its
 * creator's name.
 */
static int library_threads_but(const char *except)
{
	DIR *dir = opendir("/proc/self/task");
	cr_assert_not_null(dir);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], name[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			if (!fgets(name, sizeof(name), f))
				name[0] = 0;
			fclose(f);
		}
		name[strcspn(name, "\n")] = 0;
		n += strncmp(name, "lmm-", 4) == 0 && !(except && strcmp(name, except) == 0);
	}
	closedir(dir);
	return n;
}

static atomic_int hook_calls;
static char hook_names[4][16];

static int my_thread_create(pthread_t *t, void *(*start)(void *), void *arg, const char *name, void *user)
{
	if (user != &hook_calls)
		h_fail("thread_create: wrong user pointer");
	int i = atomic_fetch_add(&hook_calls, 1);
	if (i < 4)
		snprintf(hook_names[i], sizeof(hook_names[i]), "%s", name);
	int ret = pthread_create(t, NULL, start, arg);
	if (!ret)
		pthread_setname_np(*t, "app-reclaim"); /* the runtime's own naming */
	return ret;
}

struct lazy_holder {
	struct lmm_domain *d;
	struct lmm_ctx *a;
	atomic_int step; /* 1: unblock the signal; 2: offline */
	atomic_bool ready;
	pthread_t th;
};

/* Lazy on a, with the domain's signal blocked until step 1. */
static void *holder_main(void *arg)
{
	struct lazy_holder *h = arg;
	struct lmm_worker *w = h_online(h->d);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, lmm_default_signo());
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	lmm_switch(w, h->a);
	lmm_switch(w, NULL);
	atomic_store(&h->ready, true);
	while (atomic_load(&h->step) < 1)
		nap_us(200);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* the shootdown's signal lands */
	while (atomic_load(&h->step) < 2)
		nap_us(200);
	lmm_worker_offline(w);
	return NULL;
}

static void holder_start(struct lazy_holder *h)
{
	atomic_init(&h->step, 0);
	atomic_init(&h->ready, false);
	cr_assert_eq(pthread_create(&h->th, NULL, holder_main, h), 0);
	while (!atomic_load(&h->ready))
		nap_us(100);
}

/*
 * LMM_F_NO_THREADS: nothing of the library's runs on a thread of its own.
 * Deferred frees and shootdowns handed over wait for lmm_poll (or
 * lmm_barrier, which polls).
 */
SCHEME_TEST(runtime, no_library_threads)
{
	struct lmm_domain *d = NULL;
	struct lmm_config cfg = { .scheme = scheme, .flags = LMM_F_NO_THREADS | LMM_F_DEFER_FREE,
				  .timeout_ms = 5000 };
	if (scheme == LMM_SCHEME_RCU) {
		cr_assert_eq(create(&cfg, &d), -EINVAL, "rcu needs liburcu's call_rcu thread");
		return;
	}
	int before = library_threads_but(NULL);
	cr_assert_eq(create(&cfg, &d), 0);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	struct lazy_holder h = { .d = d, .a = &a->ctx };
	holder_start(&h);
	lmm_put(&b->ctx); /* deferred: queued for lmm_poll */
	cr_assert_eq(atomic_load(&b->frees), 0);
	cr_assert_eq(lmm_poll(d), 0);
	cr_assert_eq(atomic_load(&b->frees), 1, "lmm_poll ran the deferred free");
	lmm_put(&a->ctx); /* shootdown: the holder blocks the signal, the context is handed over */
	if (scheme == LMM_SCHEME_SHOOTDOWN) {
		cr_assert_eq(lmm_poll(d), -EAGAIN, "the holder has not left yet");
		cr_assert_eq(atomic_load(&a->frees), 0);
	}
	atomic_store(&h.step, 1); /* the holder takes the signal, then leaves */
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	int ret = -EAGAIN;
	for (int i = 0; i < 5000 && ret == -EAGAIN; i++) {
		ret = lmm_poll(d);
		nap_us(1000);
	}
	cr_assert_eq(ret, 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(library_threads_but(NULL), before, "a library thread was created");
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
	struct lmm_config threaded = { .scheme = scheme };
	cr_assert_eq(create(&threaded, &d), 0);
	cr_assert_eq(lmm_poll(d), -EINVAL, "lmm_poll on a domain with threads");
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* Every library thread goes through cfg.thread_create; without it, they are named. */
SCHEME_TEST(runtime, threads_through_the_hook)
{
	struct lmm_domain *d = NULL;
	struct lmm_config cfg = { .scheme = scheme, .flags = LMM_F_DEFER_FREE, .timeout_ms = 5000,
				  .thread_create = my_thread_create, .thread_user = &hook_calls };
	atomic_store(&hook_calls, 0);
	cr_assert_eq(create(&cfg, &d), 0);
	struct tctx *a = h_ctx(d, true);
	struct lazy_holder h = { .d = d, .a = &a->ctx };
	holder_start(&h);
	lmm_put(&a->ctx); /* shootdown: handed over to the reclaim thread */
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	int calls = atomic_load(&hook_calls);
	cr_assert_eq(calls, 1, "the reclaim thread, started by lmm_domain_create (LMM_F_DEFER_FREE)");
	cr_assert_str_eq(hook_names[0], "lmm-reclaim");
	cr_assert_eq(library_threads_but(NULL), 0, "the hook named them its own way");
	cr_assert_eq(lmm_domain_destroy(d), 0);

	cfg.thread_create = NULL;
	cr_assert_eq(create(&cfg, &d), 0);
	cr_assert_geq(library_threads_but(NULL), 1, "the library's threads are named lmm-*");
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/*
 * One library thread per domain whatever needs one (lazymm(7), "Threads,
 * system calls and signals"): with LMM_F_DEFER_FREE, the deferred frees,
 * shootdown's hand-offs and rcu's grace periods all run on lmm-reclaim.
 * A holder that blocks the signal makes shootdown hand its context over;
 * the other context nobody holds is a plain deferred free.
 */
static atomic_int one_calls;
static char one_names[4][16];

static int counting_thread_create(pthread_t *t, void *(*start)(void *), void *arg, const char *name, void *user)
{
	(void)user;
	int i = atomic_fetch_add(&one_calls, 1);
	if (i < 4)
		snprintf(one_names[i], sizeof(one_names[i]), "%s", name);
	return pthread_create(t, NULL, start, arg);
}

static void one_thread_round(struct lmm_config *cfg)
{
	struct lmm_domain *d = NULL;
	cr_assert_eq(create(cfg, &d), 0);
	struct tctx *a = h_ctx(d, false), *b = h_ctx(d, false);
	struct lazy_holder h = { .d = d, .a = &a->ctx };
	holder_start(&h);
	lmm_put(&b->ctx); /* nobody holds it: a deferred free */
	lmm_put(&a->ctx); /* shootdown: the holder blocks the signal, handed over; rcu: a grace period */
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(atomic_load(&b->frees), 1);
	cr_assert_eq(library_threads_but("lmm-reclaim"), 0, "a library thread not named lmm-reclaim");
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
	free(b);
}

SCHEME_TEST(runtime, one_library_thread)
{
	struct lmm_config cfg = { .scheme = scheme, .flags = LMM_F_DEFER_FREE, .timeout_ms = 5000,
				  .thread_create = counting_thread_create };
	atomic_store(&one_calls, 0);
	one_thread_round(&cfg);
	int calls = atomic_load(&one_calls);
	cr_assert_eq(calls, 1, "%d library threads (the first %s, the second %s)", calls, one_names[0],
		     calls > 1 ? one_names[1] : "-");
	cr_assert_str_eq(one_names[0], "lmm-reclaim");
	cfg.thread_create = NULL;
	one_thread_round(&cfg);
}

/*
 * Without LMM_F_DEFER_FREE, shootdown's reclaim thread starts at the first
 * hand-off, inside lmm_put: the hook runs there with no lock of the
 * library's held. The hook waits for the runtime's own lock, held by a
 * runtime thread that calls lmm_stats_get and lmm_barrier meanwhile (the
 * domain's locks, a kick of the reclaim engine): with a library lock held
 * across the hook, the two would deadlock.
 */
static pthread_mutex_t app_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool app_hook_entered;

static int locking_thread_create(pthread_t *t, void *(*start)(void *), void *arg, const char *name, void *user)
{
	(void)user;
	if (strcmp(name, "lmm-reclaim") == 0) {
		atomic_store(&app_hook_entered, true);
		pthread_mutex_lock(&app_lock); /* the runtime's thread registry, say */
		pthread_mutex_unlock(&app_lock);
	}
	return pthread_create(t, NULL, start, arg);
}

struct app_thread {
	struct lmm_domain *d;
	atomic_bool locked, done;
	pthread_t th;
};

static void *app_main(void *arg)
{
	struct app_thread *a = arg;
	pthread_mutex_lock(&app_lock);
	atomic_store(&a->locked, true);
	while (!atomic_load(&app_hook_entered))
		nap_us(100);
	struct lmm_stats st;
	lmm_stats_get(a->d, &st, sizeof(st));
	lmm_barrier(a->d); /* -ETIMEDOUT: the context handed off is due, its thread not yet started */
	pthread_mutex_unlock(&app_lock);
	atomic_store(&a->done, true);
	return NULL;
}

struct dropper {
	struct lmm_ctx *a;
	pthread_t th;
};

static void *dropper_main(void *arg)
{
	struct dropper *p = arg;
	lmm_put(p->a); /* the holder blocks the signal: handed off, the thread started */
	return NULL;
}

Test(runtime, thread_create_runs_without_library_locks_shootdown, .timeout = 60)
{
	struct lmm_domain *d = NULL;
	struct lmm_config cfg = { .scheme = LMM_SCHEME_SHOOTDOWN, .timeout_ms = 300,
				  .thread_create = locking_thread_create };
	cr_assert_eq(create(&cfg, &d), 0);
	struct tctx *a = h_ctx(d, false);
	struct lazy_holder h = { .d = d, .a = &a->ctx };
	holder_start(&h);
	struct app_thread app = { .d = d };
	cr_assert_eq(pthread_create(&app.th, NULL, app_main, &app), 0);
	while (!atomic_load(&app.locked))
		nap_us(100);
	struct dropper dr = { .a = &a->ctx };
	cr_assert_eq(pthread_create(&dr.th, NULL, dropper_main, &dr), 0);
	for (int i = 0; i < 10000 && !atomic_load(&app.done); i++)
		nap_us(1000);
	cr_assert(atomic_load(&app.done), "lmm_barrier blocked while lmm_put ran thread_create: a library lock was held");
	cr_assert_eq(pthread_join(app.th, NULL), 0);
	cr_assert_eq(pthread_join(dr.th, NULL), 0);
	atomic_store(&h.step, 1);
	atomic_store(&h.step, 2);
	cr_assert_eq(pthread_join(h.th, NULL), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
}

/* ---------- rcu: a runtime that reports quiescent states is never nudged ---------- */

#ifdef LMM_HAVE_RCU
struct reporter {
	struct lmm_domain *d;
	struct lmm_ctx *a;
	bool report;   /* lmm_quiescent in the loop; else a lazy sleeper that stalls grace periods */
	atomic_bool stop;
	atomic_int interrupted; /* sleeps cut short by a signal */
	atomic_long max_gap_us; /* the longest time between two reports */
	pthread_t th;
};

static long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *reporter_main(void *arg)
{
	struct reporter *r = arg;
	struct lmm_worker *w = h_online(r->d);
	lmm_switch(w, r->a); /* a long task of a: never switches, never lazy */
	if (!r->report)
		lmm_switch(w, NULL); /* lazy, asleep without the idle bracket */
	long last = now_us();
	while (!atomic_load(&r->stop)) {
		if (r->report) {
			lmm_quiescent(w); /* after each "KVM_RUN exit" */
			long now = now_us();
			if (now - last > atomic_load(&r->max_gap_us))
				atomic_store(&r->max_gap_us, now - last);
			last = now;
		}
		struct timespec ts = { 0, 200000 };
		if (nanosleep(&ts, NULL) && errno == EINTR)
			atomic_fetch_add(&r->interrupted, 1);
	}
	lmm_switch(w, NULL);
	lmm_worker_offline(w);
	return NULL;
}

struct churn {
	struct lmm_domain *d;
	int rounds;
	int failed; /* lmm_barrier errors (asserted on the test's thread) */
	pthread_t th;
};

/* Grace periods the lazy sleeper stalls: each one ends only after nudges. */
static void *churn_main(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < c->rounds; i++) {
		lmm_put(&h_ctx(c->d, true)->ctx);
		c->failed += lmm_barrier(c->d) != 0;
	}
	return NULL;
}

/*
 * The reporter runs in domain a; the lazy sleeper, which reports nothing,
 * in domain b (b == a: one domain). Grace periods begin in both, each
 * domain nudging on its own clock: nudges reach the sleeper, never the
 * reporter, whichever domain sends them.
 */
static bool reporting_worker_case(struct lmm_domain *a, struct lmm_domain *b, long nudge_min_ms)
{
	struct lmm_stats sa, sb;
	cr_assert_eq(lmm_stats(a, &sa), 0);
	uint64_t sent_before = sa.signals_sent; /* the one-domain case's, to the sleeper */
	struct tctx *ta = h_ctx(a, false), *tb = h_ctx(b, false);
	struct reporter rep = { .d = a, .a = &ta->ctx, .report = true };
	struct reporter lazy = { .d = b, .a = &tb->ctx, .report = false };
	cr_assert_eq(pthread_create(&rep.th, NULL, reporter_main, &rep), 0);
	cr_assert_eq(pthread_create(&lazy.th, NULL, reporter_main, &lazy), 0);
	nap_us(20000);
	struct churn ca = { .d = a, .rounds = 20 }, cb = { .d = b, .rounds = 20 };
	cr_assert_eq(pthread_create(&ca.th, NULL, churn_main, &ca), 0);
	if (b != a)
		cr_assert_eq(pthread_create(&cb.th, NULL, churn_main, &cb), 0);
	cr_assert_eq(pthread_join(ca.th, NULL), 0);
	if (b != a)
		cr_assert_eq(pthread_join(cb.th, NULL), 0);
	cr_assert_eq(ca.failed + cb.failed, 0, "lmm_barrier failed");
	cr_assert_eq(lmm_stats(a, &sa), 0);
	cr_assert_eq(lmm_stats(b, &sb), 0);
	cr_assert_gt(sa.rcu_nudges + (b != a ? sb.rcu_nudges : 0), 0,
		     "the sleeper, which reports nothing, is nudged");
	/* signals_sent counts per receiving worker's domain: a's is the reporter's alone. */
	uint64_t sent = b != a ? sa.signals_sent - sent_before : 0;
	int interrupted = atomic_load(&rep.interrupted);
	long gap = atomic_load(&rep.max_gap_us);
	/* A reporter the machine kept off the CPU for a nudge delay did not report often enough. */
	bool conclusive = !((sent || interrupted) && gap >= nudge_min_ms * 1000);
	if (!conclusive)
		cr_log_info("inconclusive: the reporter went %ld us without a report (load)", gap);
	else {
		cr_assert_eq(sent, 0, "the reporting worker was signalled %llu times (longest gap between reports %ld us)",
			     (unsigned long long)sent, gap);
		cr_assert_eq(interrupted, 0, "the reporting worker was signalled (longest gap between reports %ld us)", gap);
	}
	atomic_store(&rep.stop, true);
	atomic_store(&lazy.stop, true);
	cr_assert_eq(pthread_join(rep.th, NULL), 0);
	cr_assert_eq(pthread_join(lazy.th, NULL), 0);
	lmm_put(&ta->ctx);
	lmm_put(&tb->ctx);
	cr_assert_eq(lmm_barrier(a), 0);
	cr_assert_eq(lmm_barrier(b), 0);
	free(ta);
	free(tb);
	return conclusive;
}

Test(runtime, reporting_worker_never_nudged_rcu, .timeout = 60)
{
	struct lmm_domain *a = NULL, *b = NULL;
	struct lmm_config cfg = { .scheme = LMM_SCHEME_RCU, .rcu_nudge_ms = 10, .timeout_ms = 10000 };
	cr_assert_eq(create(&cfg, &a), 0);
	/* Up to 5 runs each, until one where the reporter kept its pace. */
	for (int i = 0; i < 5 && !reporting_worker_case(a, a, 10); i++)
		;
	/* Two rcu domains: grace periods span both, and so do their nudges. */
	cfg = (struct lmm_config){ .scheme = LMM_SCHEME_RCU, .rcu_nudge_ms = 5, .timeout_ms = 10000 };
	cr_assert_eq(create(&cfg, &b), 0);
	for (int i = 0; i < 5 && !reporting_worker_case(a, b, 5); i++)
		;
	cr_assert_eq(lmm_domain_destroy(b), 0);
	cr_assert_eq(lmm_domain_destroy(a), 0);
}
#endif

SCHEME_TEST(runtime, quiescent_is_harmless)
{
	struct lmm_domain *d = h_domain(scheme, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false);
	lmm_quiescent(w);
	lmm_switch(w, &a->ctx);
	lmm_quiescent(w);
	lmm_switch(w, NULL);
	lmm_quiescent(w); /* lazy: the hold is settled first */
	lmm_idle_enter(w);
	lmm_quiescent(w);
	lmm_idle_exit(w);
	lmm_put(&a->ctx);
	lmm_unlazy(w);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&a->frees), 1);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
}
