/* SPDX-License-Identifier: MIT */
/*
 * The two scheme hooks of the lazy fast path, inlined into lmm_switch.
 *
 * Everything else a scheme does sits behind its ops table in scheme_*.c. These
 * two run on every lazy enter and every lazy hit, and there an indirect call
 * costs more than the hook: hazard's round trip took 7.1 ns through the ops
 * table against a floor of 2.3 ns (bench lazy-roundtrip). So each scheme that
 * has work here gets a short section below; its slow halves stay in its file.
 *
 * Both hooks run outside lmm_switch's critical section (switch.c says why that
 * is safe): a scheme's signal handler may run between any two lines here, and a
 * section below that shares state with its handler says why that is harmless.
 * ctx is the init context only at a hazard or rcu hit, where the hook finds
 * nothing to undo (lazy_hit in switch.c).
 */
#ifndef LMM_LAZY_HOOKS_H
#define LMM_LAZY_HOOKS_H

#include "internal.h"

/* --- refcount (scheme_refcount.c): every lazy hold is a count reference --- */

static inline void refcount_lazy_enter(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	(void)w;
	/* Relaxed (mmgrab): the task leaving ctx still holds its own reference. */
	atomic_fetch_add_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
}

static inline void refcount_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	(void)w;
	/*
	 * The new task holds a reference of its own, so this cannot be the last
	 * one. Relaxed: nothing is released to anybody by this decrement; the
	 * worker keeps using ctx under the task's reference.
	 */
	atomic_fetch_sub_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
}

/* --- hazard (scheme_hazard.c: the slots, the conversion, the argument) --- */

enum { HAZARD_LAZY = 0, HAZARD_DROP = 1 };             /* w->slot[] */
#define HAZARD_OWNED ((uintptr_t)1)                     /* in slot[LAZY]: we hold a count reference */

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
	atomic_store_explicit(&w->slot[HAZARD_LAZY], (uintptr_t)ctx | HAZARD_OWNED, memory_order_release);
}

static inline void hazard_lazy_enter(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	/*
	 * Release: a converter that reads this store (or a later one) with
	 * acquire also sees everything before it, including the release store
	 * that ended our previous lazy period (see hand_over; litmus:
	 * hazard-steal). Free on x86-64; no fence.
	 */
	atomic_store_explicit(&w->slot[HAZARD_LAZY], (uintptr_t)ctx, memory_order_release);
	/*
	 * Store->load: the hazard above before the users load below. Pairs
	 * with lmm_plat_heavy_fence in hazard_users_zero, which comes after the
	 * last user's decrement and before its scan: either we see users == 0
	 * here, or the scan sees our hazard (and our mask bit, set earlier).
	 * (litmus: hazard-publish)
	 */
	hazard_light_fence(careful);
	/* Relaxed: the fence pair above is the ordering. */
	if (unlikely(atomic_load_explicit(&ctx_impl(ctx)->users, memory_order_relaxed) <= 0))
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
	if (atomic_load_explicit(&w->slot[HAZARD_DROP], memory_order_relaxed))
		lmm__hazard_drain(w);
}

static inline void hazard_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	/* Relaxed: our own word. */
	uintptr_t lazy = atomic_load_explicit(&w->slot[HAZARD_LAZY], memory_order_relaxed);
	/*
	 * Relaxed: the task that resumes ctx holds a reference of its own
	 * until after its last use here, and its drop is a release; a converter
	 * that sees the slot empty needs nothing more from us.
	 */
	atomic_store_explicit(&w->slot[HAZARD_LAZY], 0, memory_order_relaxed);
	/*
	 * Store->load: the slot cleared above before the peek at the drop slot
	 * below. Pairs with the heavy fence before reclaim_stale(): either we
	 * see a late hand-off and drop it, or the converter sees us gone and
	 * takes it back (litmus: hazard-late-handoff).
	 */
	hazard_light_fence(careful);
	/* Relaxed peek at our own word: lmm__hazard_drain's exchange is what counts. */
	if (unlikely((lazy & HAZARD_OWNED) | atomic_load_explicit(&w->slot[HAZARD_DROP], memory_order_relaxed)))
		hazard_resume_slow(w, ctx, lazy);
}

/* --- rcu (scheme_rcu.c): entering lazy mode needs nothing, the hold is the read side --- */

/* w->slot[0]: the worker's RCU state; w->slot[1]: non-zero while a grace period waits. */
#define RCU_STATE 0
#define RCU_GP_WAITING 1
#define RS_COUNTED 0x1u /* the lazy hold is a counted reference */

LMM_HIDDEN void lmm__rcu_resume_slow(struct lmm_worker *w, struct lmm_ctx *ctx);

static inline void rcu_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	/*
	 * Relaxed: our own state, and a hint written by reclaim threads
	 * (liburcu's protocol orders the report itself). The nudge handler sets
	 * RS_COUNTED only while we are lazy, and current is already ctx: no
	 * handler changes the state after these loads, so the slow half, which
	 * takes the critical section, finds what we saw. (litmus: rcu-qs-flag)
	 */
	if (unlikely((atomic_load_explicit(&w->slot[RCU_STATE], memory_order_relaxed) & RS_COUNTED) |
		     atomic_load_explicit(&w->slot[RCU_GP_WAITING], memory_order_relaxed)))
		lmm__rcu_resume_slow(w, ctx);
}

/* --- the dispatch: lmm_switch picks a copy by a byte on the worker's own line --- */

/* Schemes left out of the build (meson options) have no slow halves to call. */
#ifdef LMM_HAVE_HAZARD
#define HAVE_HAZARD 1
#else
#define HAVE_HAZARD 0
#endif
#ifdef LMM_HAVE_RCU
#define HAVE_RCU 1
#else
#define HAVE_RCU 0
#endif

/*
 * @kind: the worker's lazy byte. lmm_switch's fast copies pass a constant
 * (one copy per kind, no dispatch left); the general copy passes w->lazy.
 */
static inline __attribute__((always_inline)) void lazy_enter_hook(struct lmm_worker *w, struct lmm_ctx *ctx,
								  unsigned kind, bool careful)
{
	if (HAVE_HAZARD && kind == LAZY_HAZARD)
		hazard_lazy_enter(w, ctx, careful);
	else if (kind == LAZY_COUNTED)
		refcount_lazy_enter(w, ctx);
}

static inline __attribute__((always_inline)) void lazy_resume_hook(struct lmm_worker *w, struct lmm_ctx *ctx,
								   unsigned kind, bool careful)
{
	if (HAVE_HAZARD && kind == LAZY_HAZARD)
		hazard_lazy_resume(w, ctx, careful);
	else if (HAVE_RCU && kind == LAZY_RCU)
		rcu_lazy_resume(w, ctx);
	else if (kind == LAZY_COUNTED)
		refcount_lazy_resume(w, ctx);
}

#endif
