/* SPDX-License-Identifier: MIT */

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

atomic_long harness_frees, harness_teardowns, harness_installs;
void (*h_free_extra)(struct lmm_ctx *c);
const enum lmm_scheme h_schemes[H_NSCHEMES] = H_SCHEME_LIST;

/*
 * What this thread's worker has installed, as the hooks saw it, and which
 * worker of which domain that was: a thread that goes offline and comes
 * online again elsewhere (a new domain, a fork child) starts a new record.
 */
static __thread struct lmm_ctx *h_installed;
static __thread struct lmm_worker *h_installed_w;
static __thread struct lmm_ctx *h_installed_init;

void h_fail(const char *msg)
{
	ssize_t r = write(2, "harness: ", 9);
	r = write(2, msg, strlen(msg));
	r = write(2, "\n", 1);
	(void)r;
	abort();
}

static void check_live(struct lmm_ctx *c, const char *what)
{
	if (lmm_ctx_domain(c) && c == lmm_init_ctx(lmm_ctx_domain(c)))
		return;
	if (atomic_load(&TCTX(c)->canary) != TCTX_LIVE)
		h_fail(what);
}

/* Runs on the worker, maybe in a signal handler: atomics and write(2) only. */
static void h_switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	if (!prev || !next)
		h_fail("switch_ctx: NULL argument");
	if (prev == next)
		h_fail("switch_ctx: prev == next");
	if ((flags & LMM_SWITCH_SIGNAL) && next != lmm_init_ctx(lmm_ctx_domain(next)))
		h_fail("switch_ctx: a switch in the signal handler to another context than init");
	struct lmm_domain *d = lmm_ctx_domain(next);
	if (h_installed && w == h_installed_w && lmm_init_ctx(d) == h_installed_init && prev != h_installed)
		h_fail("switch_ctx: prev is not what was installed");
	check_live(next, "switch_ctx: installing a freed context");
	check_live(prev, "switch_ctx: leaving a freed context");
	if (next != lmm_init_ctx(d))
		atomic_fetch_add(&TCTX(next)->installed, 1);
	if (prev != lmm_init_ctx(d))
		atomic_fetch_sub(&TCTX(prev)->installed, 1);
	atomic_fetch_add(&harness_installs, 1);
	h_installed = next;
	h_installed_w = w;
	h_installed_init = lmm_init_ctx(d);
}

static void h_teardown(struct lmm_ctx *c)
{
	check_live(c, "teardown: freed context");
	if (atomic_fetch_add(&TCTX(c)->teardowns, 1) != 0)
		h_fail("teardown ran twice");
	atomic_fetch_add(&harness_teardowns, 1);
}

static void h_free(struct lmm_ctx *c)
{
	struct tctx *t = TCTX(c);
	if (atomic_load(&t->teardowns) != 1)
		h_fail("free before teardown");
	if (atomic_fetch_add(&t->frees, 1) != 0)
		h_fail("free ran twice");
	if (atomic_load(&t->installed) != 0)
		h_fail("free while installed on a worker");
	if (atomic_exchange(&t->canary, TCTX_POISON) != TCTX_LIVE)
		h_fail("free of a poisoned context");
	atomic_store(&t->free_thread, (unsigned long)pthread_self());
	atomic_fetch_add(&harness_frees, 1);
	struct lmm_ctx *other = t->drop_on_free;
	if (h_free_extra)
		h_free_extra(c);
	if (t->release_memory)
		free(t);
	if (other)
		lmm_drop(other);
}

const struct lmm_ops harness_ops = {
	.switch_ctx = h_switch_ctx,
	.teardown = h_teardown,
	.free = h_free,
};

struct lmm_domain *h_domain(enum lmm_scheme s, unsigned flags, unsigned max_workers)
{
	return h_domain_timeout(s, flags, max_workers, 20000);
}

struct lmm_domain *h_domain_timeout(enum lmm_scheme s, unsigned flags, unsigned max_workers,
				    unsigned timeout_ms)
{
	struct lmm_config cfg = { .scheme = s, .ops = &harness_ops, .flags = flags,
				  .max_workers = max_workers, .timeout_ms = timeout_ms };
	struct lmm_domain *d = NULL;
	int ret = lmm_domain_create(&cfg, &d);
	cr_assert_eq(ret, 0, "lmm_domain_create: %d", ret);
	return d;
}

struct tctx *h_ctx(struct lmm_domain *d, bool release_memory)
{
	struct tctx *t = calloc(1, sizeof(*t));
	cr_assert_not_null(t);
	h_tctx_prepare(t, release_memory);
	int ret = lmm_ctx_init(d, &t->ctx);
	cr_assert_eq(ret, 0, "lmm_ctx_init: %d", ret);
	return t;
}

void h_tctx_prepare(struct tctx *t, bool release_memory)
{
	atomic_init(&t->canary, TCTX_LIVE);
	t->release_memory = release_memory;
}

struct lmm_worker *h_online(struct lmm_domain *d)
{
	struct lmm_worker *w = NULL;
	int ret = lmm_worker_online(d, NULL, &w);
	if (ret)
		h_fail("lmm_worker_online failed");
	h_installed = lmm_init_ctx(d);
	h_installed_w = w;
	h_installed_init = h_installed;
	return w;
}

void h_run(enum lmm_scheme s, void (*body)(enum lmm_scheme))
{
	cr_assert(lmm_scheme_available(s), "scheme %s is not built in", lmm_scheme_name(s));
	body(s);
}

void h_on_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
}

void h_nap_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

static void *idler_main(void *arg)
{
	struct h_idler *t = arg;
	t->w = h_online(t->d);
	if (t->run_first) {
		lmm_switch(t->w, t->run_first);
		lmm_switch(t->w, NULL);
	}
	atomic_store(&t->ready, true);
	while (!atomic_load(&t->stop)) {
		lmm_idle_enter(t->w);
		h_nap_us(200);
		lmm_idle_exit(t->w);
		lmm_switch(t->w, NULL); /* a context-less task */
	}
	if (lmm_worker_offline(t->w))
		h_fail("idler: offline failed");
	return NULL;
}

void h_idler_start(struct h_idler *t)
{
	atomic_init(&t->ready, false);
	atomic_init(&t->stop, false);
	cr_assert_eq(pthread_create(&t->thread, NULL, idler_main, t), 0);
	while (!atomic_load(&t->ready))
		h_nap_us(50);
}

void h_idler_stop(struct h_idler *t)
{
	atomic_store(&t->stop, true);
	cr_assert_eq(pthread_join(t->thread, NULL), 0);
}
