/* SPDX-License-Identifier: MIT */
/*
 * The refcount scheme's fast-path pieces, inlined into lmm_switch
 * (switch.c says what every scheme's NAME.h declares). Every lazy hold is a
 * count reference.
 */
#ifndef LMM_SCHEME_REFCOUNT_H
#define LMM_SCHEME_REFCOUNT_H

#include "../internal.h"

/* No fast copy of lmm_switch's body: the general copy runs these hooks (its atomics dwarf the dispatch). */
#define LMM_REFCOUNT_IF_FAST_COPY(...)
/* Both hooks do work; going lazy on init took no reference, so the hit on init skips the resume hook. */
#define LMM_REFCOUNT_LAZY_HOOKS 1
#define LMM_REFCOUNT_HIT_ON_INIT 0
/* No LMM_INLINE path: inline callers call lmm_switch (it has no fast copy either). */
#define LMM_REFCOUNT_INLINE 0

static inline void refcount_lazy_enter(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	(void)w;
	(void)careful;
	/* Relaxed (mmgrab): the task leaving ctx still holds its own reference. */
	atomic_fetch_add_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
}

static inline void refcount_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	(void)w;
	(void)careful;
	/*
	 * The new task holds a reference of its own, so this cannot be the last
	 * one. Relaxed: nothing is released to anybody by this decrement; the
	 * worker keeps using ctx under the task's reference.
	 */
	atomic_fetch_sub_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
}

#endif
