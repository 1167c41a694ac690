/* SPDX-License-Identifier: MIT */
/* Contexts and their two counts: users (mmget/mmput) and count (mmgrab/mmdrop). */
#include <stdlib.h>

#include "alloc.h"
#include "internal.h"

static struct ctx_impl *checked(struct lmm_ctx *ctx, const char *call)
{
	struct ctx_impl *c = ctx_impl(ctx);
	if (unlikely(!ctx || c->magic != CTX_MAGIC))
		lmm__die(call, "%p is not an initialised context", (void *)ctx);
	return c;
}

int lmm_ctx_init(struct lmm_domain *d, struct lmm_ctx *ctx)
{
	if (!d || !ctx || ctx == &d->init)
		return -EINVAL;
	struct ctx_impl *c = ctx_impl(ctx);
	/* A live context: free clears the magic, so memory given back through it never matches. */
	if (c->magic == CTX_MAGIC)
		return -EBUSY;
	_Atomic(unsigned long) *mask = lmm__calloc(d->mask_words, sizeof(*mask));
	if (!mask)
		return -ENOMEM;
	*c = (struct ctx_impl){ .domain = d, .worker_mask = mask, .magic = CTX_MAGIC };
	atomic_init(&c->users, 1);
	atomic_init(&c->count, 1);
	atomic_init(&c->state, CTX_LIVE);
	/* Relaxed: only lmm_domain_destroy reads it, after every free's release. */
	atomic_fetch_add_explicit(&d->contexts_live, 1, memory_order_relaxed);
	return 0;
}

struct lmm_domain *lmm_ctx_domain(const struct lmm_ctx *ctx)
{
	return ctx ? ((const struct ctx_impl *)(const void *)ctx)->domain : NULL;
}

void lmm_get(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = checked(ctx, "lmm_get");
	if (c->is_init)
		return;
	/* Relaxed: the caller already holds a users reference (mmget). */
	long old = atomic_fetch_add_explicit(&c->users, 1, memory_order_relaxed);
	if (unlikely(old <= 0))
		lmm__die("lmm_get", "context %p has no users left (use lmm_get_not_zero)", (void *)ctx);
}

bool lmm_get_not_zero(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = checked(ctx, "lmm_get_not_zero");
	if (c->is_init)
		return true;
	/* Relaxed: like refcount_inc_not_zero, the caller's count reference keeps c alive. */
	return atomic_long_inc_not_zero(&c->users);
}

void lmm_put(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = checked(ctx, "lmm_put");
	if (c->is_init)
		return;
	/*
	 * Release: this user's accesses happen before teardown (pairs with the
	 * acquire load below; litmus: ctx-last-put).
	 */
	long old = atomic_fetch_sub_explicit(&c->users, 1, memory_order_release);
	if (likely(old > 1))
		return;
	if (unlikely(old < 1))
		lmm__die("lmm_put", "users of context %p dropped below zero", (void *)ctx);
	/*
	 * Acquire: pairs with every earlier put's release (each decrement
	 * continues the release sequence this load reads the end of). A load
	 * rather than a fence because ThreadSanitizer does not model fences.
	 * (litmus: ctx-last-put)
	 */
	(void)atomic_load_explicit(&c->users, memory_order_acquire);
	struct lmm_domain *d = c->domain;
	int cancel = cancel_off(); /* teardown, the scheme's scan and the final drop run to the end */
	atomic_store_explicit(&c->state, CTX_TORN, memory_order_relaxed);
	d->ops.teardown(ctx);
	stat_add(d, ST_TEARDOWNS, 1);
	if (d->scheme->users_zero)
		d->scheme->users_zero(ctx);
	lmm_drop(ctx);
	cancel_restore(cancel);
}

void lmm_grab(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = checked(ctx, "lmm_grab");
	if (c->is_init)
		return;
	/* Relaxed: the caller already holds a reference of either kind (mmgrab). */
	long old = atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
	if (unlikely(old <= 0))
		lmm__die("lmm_grab", "context %p was already released", (void *)ctx);
}

void lmm_drop(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = checked(ctx, "lmm_drop");
	if (c->is_init)
		return;
	/* Release: our accesses (and a worker's switch away) happen before free
	 * (litmus: ctx-last-put). */
	long old = atomic_fetch_sub_explicit(&c->count, 1, memory_order_release);
	if (likely(old > 1))
		return;
	if (unlikely(old < 1))
		lmm__die("lmm_drop", "count of context %p dropped below zero", (void *)ctx);
	/* Acquire: pairs with every earlier drop's release (as in lmm_put: no fence, for TSan;
	 * litmus: ctx-last-put). */
	(void)atomic_load_explicit(&c->count, memory_order_acquire);
	lmm__count_zero(c);
}
