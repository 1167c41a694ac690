/* SPDX-License-Identifier: MIT */
/*
 * Checking hooks for tests/faults.c and tests/misuse.c. These programs link
 * the static library (for the allocation hook and internals), so they cannot
 * share tests/harness.c, which is built against the shared one. Same idea:
 * a canary poisoned by free, a per-context count of workers that have it
 * installed (per switch_ctx), teardown and free exactly once; any violation
 * writes a line and aborts (async-signal-safe: switch_ctx may run in a
 * signal handler under shootdown).
 */
#ifndef LMM_TEST_REL_HOOKS_H
#define LMM_TEST_REL_HOOKS_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lazymm.h"

#define RC_LIVE 0x4c495645u
#define RC_DEAD 0xdeadbeefu

struct rctx {
	struct lmm_ctx ctx;
	atomic_uint canary;
	atomic_int teardowns, frees, installed;
	bool keep_memory; /* the test frees it (it wants to look after the free) */
};

#define RCTX(c) ((struct rctx *)(void *)((char *)(c) - offsetof(struct rctx, ctx)))

static atomic_long rel_frees;
static void (*rel_free_extra)(struct lmm_ctx *c); /* a test's own free-time action */

static void rel_fail(const char *msg)
{
	ssize_t r = write(2, "rel_hooks: ", 11);
	r = write(2, msg, strlen(msg));
	r = write(2, "\n", 1);
	(void)r;
	abort();
}

static bool rel_is_init(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(lmm_ctx_domain(c));
}

static void rel_switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w;
	if (!rel_is_init(next)) {
		if (atomic_load(&RCTX(next)->canary) != RC_LIVE)
			rel_fail("switch_ctx: installing a freed context");
		atomic_fetch_add(&RCTX(next)->installed, 1);
	}
	if (!rel_is_init(prev)) {
		if (atomic_load(&RCTX(prev)->canary) != RC_LIVE)
			rel_fail("switch_ctx: leaving a context freed while installed");
		atomic_fetch_sub(&RCTX(prev)->installed, 1);
	}
}

static void rel_teardown(struct lmm_ctx *c)
{
	if (atomic_fetch_add(&RCTX(c)->teardowns, 1))
		rel_fail("teardown twice");
}

static void rel_free(struct lmm_ctx *c)
{
	struct rctx *r = RCTX(c);
	if (atomic_load(&r->teardowns) != 1)
		rel_fail("free before teardown");
	if (atomic_fetch_add(&r->frees, 1))
		rel_fail("free twice");
	if (atomic_load(&r->installed))
		rel_fail("free while installed");
	atomic_store(&r->canary, RC_DEAD);
	atomic_fetch_add(&rel_frees, 1);
	if (rel_free_extra)
		rel_free_extra(c);
	if (!r->keep_memory)
		free(r);
}

static const struct lmm_ops rel_ops = {
	.switch_ctx = rel_switch_ctx,
	.teardown = rel_teardown,
	.free = rel_free,
};

static struct rctx *rel_new(struct lmm_domain *d)
{
	struct rctx *r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	atomic_init(&r->canary, RC_LIVE);
	cr_assert_eq(lmm_ctx_init(d, &r->ctx), 0);
	return r;
}

static struct lmm_domain *rel_domain(enum lmm_scheme s, unsigned flags, unsigned timeout_ms)
{
	struct lmm_config cfg = { .scheme = s, .ops = &rel_ops, .flags = flags,
				  .max_workers = 8, .timeout_ms = timeout_ms };
	struct lmm_domain *d = NULL;
	int ret = lmm_domain_create(&cfg, &d);
	cr_assert_eq(ret, 0, "lmm_domain_create: %d", ret);
	return d;
}

static void rel_nap_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

/* A test written once, registered for every scheme built in (LMM_HAVE_* from meson). */
#ifdef LMM_HAVE_SHOOTDOWN
#define REL_IF_SHOOTDOWN(x) x
#else
#define REL_IF_SHOOTDOWN(x)
#endif
#ifdef LMM_HAVE_HAZARD
#define REL_IF_HAZARD(x) x
#else
#define REL_IF_HAZARD(x)
#endif
#ifdef LMM_HAVE_RCU
#define REL_IF_RCU(x) x
#else
#define REL_IF_RCU(x)
#endif
#define REL_TEST(suite, name, ...)                                                               \
	static void suite##_##name##_body(enum lmm_scheme scheme);                                  \
	Test(suite, name##_refcount, __VA_ARGS__) { suite##_##name##_body(LMM_SCHEME_REFCOUNT); }    \
	REL_IF_SHOOTDOWN(Test(suite, name##_shootdown, __VA_ARGS__) {                               \
		suite##_##name##_body(LMM_SCHEME_SHOOTDOWN);                                        \
	})                                                                                          \
	REL_IF_HAZARD(Test(suite, name##_hazard, __VA_ARGS__) { suite##_##name##_body(LMM_SCHEME_HAZARD); }) \
	REL_IF_RCU(Test(suite, name##_rcu, __VA_ARGS__) { suite##_##name##_body(LMM_SCHEME_RCU); })  \
	static void suite##_##name##_body(enum lmm_scheme scheme)

#endif
