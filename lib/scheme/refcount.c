/* SPDX-License-Identifier: MIT */
/*
 * The refcount scheme (MMU_LAZY_TLB_REFCOUNT): every lazy hold is a count
 * reference. Going lazy grabs the active context; the next switch to another
 * context drops it only after switch_ctx installed the new one
 * (finish_task_switch); the lazy hit drops it without reinstalling.
 *
 * Every lazy enter and leave writes the context's shared count: this is the
 * line that held Linux to ~1M switches/s on 192 cores, and the baseline the
 * other schemes are measured against. The lazy enter and the lazy hit are
 * inline in refcount.h.
 */
#include "refcount.h"

static void refcount_lazy_release(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	(void)w;
	/* The full drop: its release orders switch_ctx's last use of ctx before free
	 * (litmus: ctx-last-put). */
	lmm_drop(ctx);
}

static void refcount_count_zero(struct lmm_ctx *ctx)
{
	/* Every lazy holder held a count reference: none is left. */
	lmm__ctx_release(ctx);
}

const struct lmm_scheme_ops lmm_scheme_refcount = {
	.id = LMM_SCHEME_REFCOUNT,
	.lazy_release = refcount_lazy_release,
	.count_zero = refcount_count_zero,
};
