/* SPDX-License-Identifier: MIT */
/*
 * The hazard scheme's fast-path pieces, inlined into lmm_switch (switch.c
 * says what every scheme's NAME.h declares). The slots are struct
 * hazard_hot (hazard_state.h); the conversion, its slow halves and the
 * argument are in hazard.c and docs/hazard.md.
 */
#ifndef LMM_SCHEME_HAZARD_H
#define LMM_SCHEME_HAZARD_H

#include "../internal.h"

/* A fast copy of lmm_switch's body with these hooks inline. */
#define LMM_HAZARD_IF_FAST_COPY(...) __VA_ARGS__
/* Both hooks do work; the hit on init finds nothing to undo (an empty lazy slot): no test for it. */
#define LMM_HAZARD_LAZY_HOOKS 1
#define LMM_HAZARD_HIT_ON_INIT 1
/* lazymm.h's LMM_INLINE path has these hooks too (its lmm__inline_hazard_* pieces). */
#define LMM_HAZARD_INLINE 1

#define HAZARD_OWNED LMM_INLINE_HAZARD_OWNED /* in hot.hazard.lazy: we hold a count reference */

LMM_HIDDEN void lmm__hazard_drain(struct lmm_worker *w);

/*
 * lmm_plat_light_fence, minus its run-time check in lmm_switch's fast copies:
 * a worker with membarrier_fence (membarrier not registered) always takes
 * the general copy (careful). So in a fast copy the heavy side is membarrier
 * and a compiler barrier is the whole light side (litmus: hazard-publish,
 * hazard-late-handoff).
 */
static inline void hazard_light_fence(bool careful)
{
	if (careful)
		lmm_plat_light_fence();
	else
		/* Compiler barrier only (litmus: hazard-publish): */
		atomic_signal_fence(memory_order_seq_cst); /* pairs with lmm_plat_heavy_fence (membarrier) */
}

/*
 * Users are gone (a service worker on a count reference): the scan may
 * already have run, so the hazard protects nothing. Hold a reference of our
 * own. Relaxed (mmgrab): the task leaving ctx still holds one. If the scan
 * saw the hazard anyway, it also handed us one through the drop slot; both
 * are dropped when the lazy period ends (litmus: hazard-countonly). Out of
 * line: its abort would give lmm_switch a stack frame on every path.
 */
static __attribute__((noinline, cold)) void hazard_enter_counted(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	long old = atomic_fetch_add_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
	if (unlikely(old <= 0))
		/* Nothing held it: its task's reference went while we still ran it. */
		lmm__die("lmm_switch", "context %p was freed while current on this worker", (void *)ctx);
	/* Release: as in hazard_lazy_enter. */
	atomic_store_explicit(&w->hot.hazard.lazy, (uintptr_t)ctx | HAZARD_OWNED, memory_order_release);
}

static inline void hazard_lazy_enter(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	/* Release (litmus: hazard-steal): lazymm.h's piece, shared with LMM_INLINE callers. */
	lmm__inline_hazard_publish(&w->hot.hazard, ctx);
	/*
	 * Store->load: the hazard above before the users load below. Pairs
	 * with lmm_plat_heavy_fence in hazard_users_zero, which comes after the
	 * last user's decrement and before its scan: either we see users == 0
	 * here, or the scan sees our hazard (and our mask bit, set earlier).
	 * (litmus: hazard-publish)
	 */
	hazard_light_fence(careful);
	/* Relaxed: the fence pair above is the ordering. */
	if (unlikely(lmm__inline_users_gone(ctx)))
		hazard_enter_counted(w, ctx);
}

/* The lazy hold was counted, or a reference waits in the drop slot. */
static __attribute__((noinline, cold)) void hazard_resume_slow(struct lmm_worker *w, struct lmm_ctx *ctx,
							 uintptr_t lazy)
{
	if (lazy & HAZARD_OWNED)
		/* Not the last reference (the task holds one): relaxed, like refcount's resume. */
		atomic_fetch_sub_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
	/* Relaxed peek, as in hazard_lazy_resume. */
	if (atomic_load_explicit(&w->hot.hazard.drop, memory_order_relaxed))
		lmm__hazard_drain(w);
}

static inline void hazard_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	/* Relaxed load and store of our own slot (lazymm.h's piece says why). */
	uintptr_t lazy = lmm__inline_hazard_clear(&w->hot.hazard);
	/*
	 * Store->load: the slot cleared above before the peek at the drop slot
	 * below. Pairs with the heavy fence before reclaim_stale(): either we
	 * see a late hand-off and drop it, or the converter sees us gone and
	 * takes it back (litmus: hazard-late-handoff).
	 */
	hazard_light_fence(careful);
	/* Relaxed peek at our own word: lmm__hazard_drain's exchange is what counts. */
	if (unlikely(lmm__inline_hazard_pending(&w->hot.hazard, lazy)))
		hazard_resume_slow(w, ctx, lazy);
}

#endif
