/* SPDX-License-Identifier: MIT */
/*
 * The rcu scheme's fast-path pieces, inlined into lmm_switch (switch.c says
 * what every scheme's NAME.h declares): entering lazy mode needs nothing,
 * the hold is the read side; the lazy hit reads two words of struct
 * rcu_hot (rcu_state.h). The rest is in rcu.c.
 */
#ifndef LMM_SCHEME_RCU_H
#define LMM_SCHEME_RCU_H

#include "../internal.h"

/* A fast copy of lmm_switch's body with the resume hook inline. */
#define LMM_RCU_IF_FAST_COPY(...) __VA_ARGS__
/* The resume hook does work; on init it finds nothing to undo (no counted hold): no test for it. */
#define LMM_RCU_LAZY_HOOKS 1
#define LMM_RCU_HIT_ON_INIT 1
/* lazymm.h's LMM_INLINE path has the resume hook too (lmm__inline_rcu_pending). */
#define LMM_RCU_INLINE 1

#define RS_COUNTED LMM_INLINE_RCU_COUNTED /* in hot.rcu.state: the lazy hold is a counted reference */

LMM_HIDDEN void lmm__rcu_resume_slow(struct lmm_worker *w, struct lmm_ctx *ctx);

static inline void rcu_lazy_enter(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	(void)w;
	(void)ctx;
	(void)careful;
}

static inline void rcu_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	(void)careful;
	/* Relaxed loads (lazymm.h's piece, shared with LMM_INLINE callers; litmus: rcu-qs-flag). */
	if (unlikely(lmm__inline_rcu_pending(&w->hot.rcu)))
		lmm__rcu_resume_slow(w, ctx);
}

#endif
