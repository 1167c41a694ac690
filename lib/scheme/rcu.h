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

#define RS_COUNTED 0x1u /* in hot.rcu.state: the lazy hold is a counted reference */

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
	/*
	 * Relaxed: our own state, and a hint written by reclaim threads
	 * (liburcu's protocol orders the report itself). The nudge handler sets
	 * RS_COUNTED only while we are lazy, and current is already ctx: no
	 * handler changes the state after these loads, so the slow half, which
	 * takes the critical section, finds what we saw. (litmus: rcu-qs-flag)
	 */
	if (unlikely((atomic_load_explicit(&w->hot.rcu.state, memory_order_relaxed) & RS_COUNTED) |
		     atomic_load_explicit(&w->hot.rcu.gp_waiting, memory_order_relaxed)))
		lmm__rcu_resume_slow(w, ctx);
}

#endif
