/* SPDX-License-Identifier: MIT */
/*
 * Faults: allocation failure at every allocation site, worker threads that
 * leave badly (exit without offline, sleep lazily without lmm_idle_enter,
 * block the domain's signal, get cancelled while lazy), fork() with online
 * workers, and coexistence with the application's own signal handling.
 * Every test runs for every scheme built in; the harness hooks abort on a free
 * while installed, a double free or teardown; ASan's leak check covers
 * memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include "sanitizer.h"
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "alloc.h"

/* ---------- allocation failure at every site ---------- */

enum site { SITE_DOMAIN = 1, SITE_WORKER = 2, SITE_CTX = 4 };
static unsigned sites_hit;

/*
 * Run call; if it failed with -ENOMEM, that must be the injected failure
 * (consumed, nothing else armed): disarm, and the same call must now work.
 */
#define TRY(call, site)                                                                        \
	do {                                                                                   \
		int ret_ = (call);                                                             \
		if (ret_ == -ENOMEM) {                                                         \
			cr_assert(!lmm__alloc_fail_pending(), #call ": -ENOMEM without an injected failure"); \
			sites_hit |= (site);                                                   \
			lmm__alloc_fail_nth(0);                                                \
			ret_ = (call);                                                         \
		}                                                                              \
		cr_assert_eq(ret_, 0, #call ": %d", ret_);                                     \
	} while (0)

struct alloc_helper {
	struct lmm_domain *d;
	int ret;
	bool injected;
};

static void *alloc_second_worker(void *arg)
{
	struct alloc_helper *h = arg;
	struct lmm_worker *w = NULL;
	/* No Criterion asserts off the test's thread: report, and let the test assert. */
	h->ret = lmm_worker_online(h->d, NULL, &w);
	if (h->ret == -ENOMEM) {
		h->injected = !lmm__alloc_fail_pending();
		lmm__alloc_fail_nth(0);
		h->ret = lmm_worker_online(h->d, NULL, &w);
	}
	if (!h->ret)
		h->ret = lmm_worker_offline(w);
	return NULL;
}

static void alloc_scenario(enum lmm_scheme scheme, unsigned flags)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops, .flags = flags,
				  .max_workers = 4, .timeout_ms = 5000 };
	struct lmm_domain *d = NULL;
	long frees0 = atomic_load(&harness_frees);
	TRY(lmm_domain_create(&cfg, &d), SITE_DOMAIN);

	struct lmm_worker *w = NULL;
	TRY(lmm_worker_online(d, NULL, &w), SITE_WORKER);
	struct tctx *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	cr_assert(a && b);
	h_tctx_prepare(a, true);
	h_tctx_prepare(b, true);
	TRY(lmm_ctx_init(d, &a->ctx), SITE_CTX);
	TRY(lmm_ctx_init(d, &b->ctx), SITE_CTX);

	/* A second worker slot, made while the first is online. */
	struct alloc_helper h = { .d = d };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, alloc_second_worker, &h), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(h.ret, 0, "second worker: %d", h.ret);
	if (h.injected)
		sites_hit |= SITE_WORKER;

	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_switch(w, &b->ctx); /* ends the lazy hold on a */
	lmm_put(&a->ctx);
	lmm_switch(w, NULL);
	lmm_put(&b->ctx); /* the last user leaves while we hold b lazily */
	lmm_unlazy(w);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_worker_offline(w), 0);
	TRY(lmm_worker_online(d, NULL, &w), SITE_WORKER);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(atomic_load(&harness_frees) - frees0, 2);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

static void alloc_every_site(enum lmm_scheme scheme, unsigned flags)
{
	unsigned long n;
	sites_hit = 0;
	for (n = 1; n < 1000; n++) {
		lmm__alloc_fail_nth(n);
		alloc_scenario(scheme, flags);
		bool reached = !lmm__alloc_fail_pending();
		lmm__alloc_fail_nth(0);
		if (!reached)
			break; /* the scenario makes fewer than n allocations: all sites done */
	}
	cr_assert_lt(n, 1000);
	cr_assert_gt(n, 3, "only %lu allocations: is the hook wired?", n - 1);
	/* The core's own sites; a scheme's allocations show up as extra n. */
	cr_assert_eq(sites_hit, SITE_DOMAIN | SITE_WORKER | SITE_CTX, "sites hit: %#x", sites_hit);
	cr_log_info("%s: %lu allocation sites failed in turn", lmm_scheme_name(scheme), n - 1);
}

SCHEME_TEST_OPTS(faults, alloc_every_site, .timeout = 120) { alloc_every_site(scheme, 0); }
SCHEME_TEST_OPTS(faults, alloc_every_site_defer_debug, .timeout = 120)
{
	alloc_every_site(scheme, LMM_F_DEFER_FREE | LMM_F_DEBUG);
}

/* ---------- workers that leave badly ---------- */

enum lazy_mode {
	MODE_EXIT_NO_OFFLINE, /* return from the thread while lazy */
	MODE_SLEEP,           /* sleep lazily without lmm_idle_enter, then offline */
	MODE_CANCEL,          /* pthread_cancel while lazy, blocked in sleep() */
	MODE_BLOCK_SIGNAL,    /* the domain's signal blocked while lazy */
	MODE_READ,            /* lazy and blocked in read(2) on a pipe */
};

struct lazy_thread {
	struct lmm_domain *d;
	struct tctx *ctx;
	enum lazy_mode mode;
	atomic_int phase; /* 0 starting, 1 lazy and waiting, 2 go on */
	int pipe_rd;
	ssize_t read_ret;
	int read_errno;
	pthread_t th;
};

static void *lazy_main(void *arg)
{
	struct lazy_thread *l = arg;
	struct lmm_worker *w = NULL;
	if (lmm_worker_online(l->d, NULL, &w))
		h_fail("lazy thread: online failed");
	if (l->mode == MODE_BLOCK_SIGNAL) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, lmm_default_signo());
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	}
	lmm_switch(w, &l->ctx->ctx);
	if (atomic_load(&l->ctx->canary) != TCTX_LIVE)
		h_fail("lazy thread: context dead while current");
	lmm_switch(w, NULL);
	atomic_store(&l->phase, 1);
	if (l->mode == MODE_CANCEL) {
		for (;;)
			sleep(1); /* a cancellation point; a shootdown signal only restarts the loop */
	}
	if (l->mode == MODE_READ) {
		char c;
		/* The application relies on SA_RESTART: an EINTR here is a failure. */
		l->read_ret = read(l->pipe_rd, &c, 1);
		l->read_errno = l->read_ret < 0 ? errno : 0;
	} else {
		while (atomic_load(&l->phase) != 2)
			h_nap_us(1000); /* lazy, and the library is not told */
	}
	if (l->mode == MODE_EXIT_NO_OFFLINE)
		return NULL;
	if (l->mode == MODE_BLOCK_SIGNAL) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, lmm_default_signo());
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	}
	if (lmm_worker_offline(w))
		h_fail("lazy thread: offline failed");
	return NULL;
}

static void lazy_start(struct lazy_thread *l, struct lmm_domain *d, struct tctx *c, enum lazy_mode m)
{
	*l = (struct lazy_thread){ .d = d, .ctx = c, .mode = m, .pipe_rd = -1 };
	atomic_init(&l->phase, 0);
}

static void lazy_run(struct lazy_thread *l)
{
	cr_assert_eq(pthread_create(&l->th, NULL, lazy_main, l), 0);
	while (atomic_load(&l->phase) != 1)
		h_nap_us(200);
}

static void lazy_finish(struct lazy_thread *l)
{
	void *res = NULL;
	if (l->mode == MODE_CANCEL) {
		cr_assert_eq(pthread_cancel(l->th), 0);
		cr_assert_eq(pthread_join(l->th, &res), 0);
		cr_assert_eq(res, PTHREAD_CANCELED);
	} else {
		atomic_store(&l->phase, 2);
		cr_assert_eq(pthread_join(l->th, NULL), 0);
	}
}

/*
 * The worker is the last holder (lazily) when the last user leaves; the
 * barrier must come back (0, or -ETIMEDOUT for a worker that never lets the
 * free through); the free must not come before the worker let go (the hooks
 * check); after the thread is gone, everything is freed and the domain dies.
 */
static void bad_leaver(enum lmm_scheme scheme, enum lazy_mode mode, bool put_before_leaving)
{
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 300);
	struct tctx *a = h_ctx(d, true);
	struct lazy_thread l;
	lazy_start(&l, d, a, mode);
	lazy_run(&l);
	if (put_before_leaving) {
		lmm_put(&a->ctx);
		int ret = lmm_barrier(d);
		cr_assert(ret == 0 || ret == -ETIMEDOUT, "lmm_barrier: %d", ret);
	}
	lazy_finish(&l);
	if (!put_before_leaving)
		lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&harness_frees), 1);
	struct lmm_stats st;
	lmm_stats(d, &st);
	cr_assert_eq(st.workers_online, 0, "the thread's exit did not take its worker offline");
	cr_assert_eq(st.contexts_live, 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

SCHEME_TEST_OPTS(faults, exit_without_offline_lazy, .timeout = 60) { bad_leaver(scheme, MODE_EXIT_NO_OFFLINE, false); }
SCHEME_TEST_OPTS(faults, exit_without_offline_last_holder, .timeout = 60) { bad_leaver(scheme, MODE_EXIT_NO_OFFLINE, true); }
SCHEME_TEST_OPTS(faults, lazy_sleep_without_idle, .timeout = 60) { bad_leaver(scheme, MODE_SLEEP, true); }
/*
 * Not under TSan: a thread cancelled inside a blocking call runs its cleanup
 * (here the TSD destructor that takes the worker offline) while TSan's
 * interceptor ignores synchronization (google/sanitizers#646), so the free
 * that follows looks racy. A suppression could only match by the test's
 * name, which appears in no access stack. These run unsanitized and under
 * ASan+UBSan; the same path without cancellation runs under TSan too
 * (exit_without_offline_*, lazy_sleep_without_idle).
 */
static void cancel_leaver(enum lmm_scheme scheme, bool last_holder)
{
#ifdef LMM_TEST_TSAN
	(void)scheme;
	(void)last_holder;
	cr_skip_test("pthread_cancel inside a blocking call: TSan cannot follow it (google/sanitizers#646)");
#else
	bad_leaver(scheme, MODE_CANCEL, last_holder);
#endif
}

SCHEME_TEST_OPTS(faults, cancel_while_lazy, .timeout = 60) { cancel_leaver(scheme, false); }
SCHEME_TEST_OPTS(faults, cancel_while_last_lazy_holder, .timeout = 60) { cancel_leaver(scheme, true); }
SCHEME_TEST_OPTS(faults, blocked_signal_while_last_holder, .timeout = 60) { bad_leaver(scheme, MODE_BLOCK_SIGNAL, true); }

/* ---------- fork with online workers ---------- */

/* The child: only the forking thread exists. Plain checks and _exit (no Criterion here). */
static int child_uses_new_domain(enum lmm_scheme scheme)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops, .max_workers = 4 };
	struct lmm_domain *d = NULL;
	if (lmm_worker_self())
		return 10; /* the forking thread is no worker here */
	if (lmm_domain_create(&cfg, &d))
		return 11;
	struct lmm_worker *w = NULL;
	if (lmm_worker_online(d, NULL, &w))
		return 12;
	struct tctx *b = calloc(1, sizeof(*b));
	h_tctx_prepare(b, true);
	if (lmm_ctx_init(d, &b->ctx))
		return 13;
	long frees0 = atomic_load(&harness_frees);
	lmm_switch(w, &b->ctx);
	lmm_switch(w, NULL);
	lmm_put(&b->ctx);
	lmm_unlazy(w);
	if (lmm_barrier(d))
		return 14;
	if (atomic_load(&harness_frees) != frees0 + 1)
		return 15;
	if (lmm_worker_offline(w))
		return 16;
	if (lmm_domain_destroy(d))
		return 17;
	return 0;
}

SCHEME_TEST_OPTS(faults, fork_with_online_workers, .timeout = 60)
{
	if (scheme == LMM_SCHEME_RCU)
		/*
		 * Known limitation (docs/reliability.md): liburcu's QSBR registry
		 * in the child still lists the parent's online workers, threads
		 * that do not exist there, so no grace period, hence no free of
		 * the child's new rcu domain, ever ends (lmm_barrier: -ETIMEDOUT).
		 */
		cr_skip_test("rcu: a fork child cannot complete grace periods while the parent had online workers");
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 5000);
	struct tctx *a = h_ctx(d, true);
	struct lazy_thread l[2];
	for (int i = 0; i < 2; i++) {
		lazy_start(&l[i], d, a, MODE_SLEEP);
		lazy_run(&l[i]);
	}
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(child_uses_new_domain(scheme)); /* _exit: the parent's objects are not ours */
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status %#x", status);
	/* The parent is unaffected. */
	lmm_put(&a->ctx);
	for (int i = 0; i < 2; i++)
		lazy_finish(&l[i]);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&harness_frees), 1);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* ---------- the application's own signals ---------- */

static atomic_int app_usr1, app_domain_sig;

static void app_usr1_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&app_usr1, 1);
}

static void app_domain_sig_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&app_domain_sig, 1);
}

/* Not SIGUSR2: that is the domain's own default where realtime signals are missing. */
#define WAITED_SIGNAL SIGWINCH

static void *sigwaiter_main(void *arg)
{
	sigset_t *set = arg;
	int sig = 0;
	if (sigwait(set, &sig) || sig != WAITED_SIGNAL)
		h_fail("sigwait did not return the waited signal");
	return NULL;
}

static void *plain_thread_main(void *arg)
{
	atomic_int *stop = arg;
	while (!atomic_load(stop))
		h_nap_us(500);
	return NULL;
}

SCHEME_TEST_OPTS(faults, signals_coexist, .timeout = 60)
{
#ifdef LMM_TEST_TSAN
	/*
	 * Under TSan the domain's signal does not reach a worker blocked in
	 * read(2) before the barrier's timeout, nor the application's handler a
	 * plain thread, now and then, whatever the scheme (the same test passes
	 * unsanitized and under ASan). Not understood yet: an open finding in
	 * docs/reliability.md, not a pass.
	 */
	cr_skip_test("signal to a worker blocked in read(2) under TSan: open finding, see docs/reliability.md");
#endif
	int signo = lmm_default_signo();
	cr_assert(signo != SIGUSR1 && signo != WAITED_SIGNAL);

	/* The application's handlers, installed before the domain: no SA_RESTART on ours. */
	struct sigaction sa, old_usr1, old_dom, now;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = app_usr1_handler;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGUSR1, &sa, &old_usr1), 0);
	sa.sa_handler = app_domain_sig_handler;
	cr_assert_eq(sigaction(signo, &sa, &old_dom), 0);

	/* WAITED_SIGNAL goes to a sigwait thread: blocked everywhere (threads inherit the mask). */
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, WAITED_SIGNAL);
	cr_assert_eq(pthread_sigmask(SIG_BLOCK, &usr2, NULL), 0);
	pthread_t waiter;
	cr_assert_eq(pthread_create(&waiter, NULL, sigwaiter_main, &usr2), 0);

	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 5000);
	struct tctx *a = h_ctx(d, true);

	/* A lazy worker blocked in read(2): the last put must not make read fail. */
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	struct lazy_thread l;
	lazy_start(&l, d, a, MODE_READ);
	l.pipe_rd = fds[0];
	lazy_run(&l);
	h_nap_us(2000); /* let it block in read */
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0, "the free waits for a worker blocked in read(2)");

	/* Another thread (no worker) gets the domain's signal number: the application's handler runs. */
	atomic_int stop = 0;
	pthread_t plain;
	cr_assert_eq(pthread_create(&plain, NULL, plain_thread_main, &stop), 0);
	cr_assert_eq(pthread_kill(plain, signo), 0);
	cr_assert_eq(pthread_kill(pthread_self(), SIGUSR1), 0);
	cr_assert_eq(pthread_kill(waiter, WAITED_SIGNAL), 0);
	cr_assert_eq(pthread_join(waiter, NULL), 0);
	for (int i = 0; i < 2000 && (atomic_load(&app_domain_sig) == 0 || atomic_load(&app_usr1) == 0); i++)
		h_nap_us(1000);
	cr_assert_eq(atomic_load(&app_usr1), 1);
	cr_assert_eq(atomic_load(&app_domain_sig), 1, "the application's handler for signal %d was not run", signo);
	atomic_store(&stop, 1);
	cr_assert_eq(pthread_join(plain, NULL), 0);

	cr_assert_eq(write(fds[1], "x", 1), 1);
	lazy_finish(&l);
	cr_assert_eq(l.read_ret, 1, "read(2) in a lazy worker returned %zd (errno %d)", l.read_ret, l.read_errno);
	cr_assert_eq(atomic_load(&harness_frees), 1);
	cr_assert_eq(lmm_domain_destroy(d), 0);

	/* The application's handlers are back in place. */
	cr_assert_eq(sigaction(signo, NULL, &now), 0);
	cr_assert_eq((void *)now.sa_handler, (void *)app_domain_sig_handler);
	cr_assert_eq(sigaction(SIGUSR1, NULL, &now), 0);
	cr_assert_eq((void *)now.sa_handler, (void *)app_usr1_handler);
	close(fds[0]);
	close(fds[1]);
	sigaction(SIGUSR1, &old_usr1, NULL);
	sigaction(signo, &old_dom, NULL);
}
