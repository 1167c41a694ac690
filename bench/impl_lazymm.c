/* SPDX-License-Identifier: MIT */
/*
 * lazymm's schemes behind the bench's interface, through <lazymm.h> and
 * nothing else. The driver links no lazymm of its own and reaches this
 * unit through lmmb_lazymm_unit() only, so that the same source is built
 * once per linkage, each a module the driver loads (bench/meson.build).
 *
 * BENCH_LMM_INLINE: the inline build, as a user opts in to the header's
 * inline fast path; meson builds it only when <lazymm.h> has one.
 */
#ifdef BENCH_LMM_INLINE
#define LMM_INLINE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void (*ctx_free)(struct bctx *c);

/* The application's hooks. switch_ctx stands for installing page tables. */
static void hook_switch(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w;
	bench_switch_ctx((struct bctx *)(void *)prev, (struct bctx *)(void *)next);
}

static void hook_teardown(struct lmm_ctx *ctx)
{
	(void)ctx;
}

static void hook_free(struct lmm_ctx *ctx)
{
	ctx_free((struct bctx *)(void *)ctx);
}

static const struct lmm_ops hooks = { hook_switch, hook_teardown, hook_free };

/* Always inline: the loops (loops.h) add no call of their own, whatever lmm_switch expands to. */
static inline __attribute__((always_inline)) void loop_switch(struct bthread *t, struct bctx *next)
{
	lmm_switch(t->w, next ? &next->lmm : NULL);
}

static inline void loop_idle_enter(struct run *r, struct bthread *t)
{
	(void)r;
	lmm_idle_enter(t->w);
}

static inline void loop_idle_exit(struct run *r, struct bthread *t)
{
	(void)r;
	lmm_idle_exit(t->w);
}

#include "loops.h"

static void fail(const char *what, const struct run *r, int ret)
{
	fprintf(stderr, "lmm-bench: %s(%s): %s\n", what, lmm_scheme_name((enum lmm_scheme)r->im->scheme),
		strerror(-ret));
	exit(1);
}

static void lazymm_open(struct run *r, unsigned max_workers)
{
	struct lmm_config cfg = { .scheme = (enum lmm_scheme)r->im->scheme, .ops = &hooks,
				  .max_workers = max_workers };
	int ret = lmm_domain_create(&cfg, &r->d);
	if (ret)
		fail("lmm_domain_create", r, ret);
}

static void lazymm_close(struct run *r)
{
	int ret = lmm_domain_destroy(r->d);
	if (ret)
		fprintf(stderr, "lmm-bench: lmm_domain_destroy(%s): %s\n", r->im->name, strerror(-ret));
}

static void lazymm_ctx_init(struct run *r, struct bctx *c)
{
	int ret = lmm_ctx_init(r->d, &c->lmm);
	if (ret)
		fail("lmm_ctx_init", r, ret);
}

static void lazymm_put(struct run *r, struct bctx *c)
{
	(void)r;
	lmm_put(&c->lmm);
}

static void lazymm_barrier(struct run *r)
{
	int ret = lmm_barrier(r->d);
	if (ret)
		fprintf(stderr, "lmm-bench: lmm_barrier(%s): %s\n", r->im->name, strerror(-ret));
}

static void lazymm_thread_enter(struct run *r, struct bthread *t)
{
	int ret = lmm_worker_online(r->d, t, &t->w);
	if (ret)
		fail("lmm_worker_online", r, ret);
}

static void lazymm_thread_leave(struct run *r, struct bthread *t)
{
	lmm_switch(t->w, NULL);
	int ret = lmm_worker_offline(t->w);
	if (ret)
		fprintf(stderr, "lmm-bench: lmm_worker_offline(%s): %s\n", r->im->name, strerror(-ret));
}

static void lazymm_counters(struct run *r, uint64_t *signals, uint64_t *conversions)
{
	struct lmm_stats st;
	*signals = *conversions = 0;
	if (lmm_stats(r->d, &st) == 0) {
		*signals = st.signals_sent + st.rcu_nudges;
		*conversions = st.conversions;
	}
}

static const struct impl_ops lazymm_ops = {
	.open = lazymm_open,
	.close = lazymm_close,
	.ctx_init = lazymm_ctx_init,
	.ctx_put = lazymm_put,
	.barrier = lazymm_barrier,
	.thread_enter = lazymm_thread_enter,
	.thread_leave = lazymm_thread_leave,
	.sw = loop_switch,
	.idle_enter = loop_idle_enter,
	.idle_exit = loop_idle_exit,
	.counters = lazymm_counters,
	LOOPS_OPS,
};

static const char *scheme_name(int scheme)
{
	return lmm_scheme_name((enum lmm_scheme)scheme);
}

static bool scheme_available(int scheme)
{
	return lmm_scheme_available((enum lmm_scheme)scheme);
}

const struct lazymm_unit *lmmb_lazymm_unit(void (*free_fn)(struct bctx *c))
{
	/* Every scheme the header knows, by number: a new one shows up by itself. */
	static const struct lazymm_unit unit = {
		.abi = LAZYMM_UNIT_ABI,
		.ops = &lazymm_ops,
		.scheme_first = LMM_SCHEME_REFCOUNT,
		.scheme_last = LMM_SCHEME_RCU,
		.scheme_name = scheme_name,
		.scheme_available = scheme_available,
	};
	ctx_free = free_fn;
	return &unit;
}
