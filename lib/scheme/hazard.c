/* SPDX-License-Identifier: MIT */
/*
 * The hazard scheme (Lutomirski 2022, "sched: Use lightweight hazard pointers
 * to grab lazy mms"): a lazy hold is a hazard pointer in the worker's own hot
 * block, not a reference. The last user, after teardown, converts every
 * hazard on the context into a counted reference handed to that worker
 * through its drop slot. docs/hazard.md has the protocol, a diagram and the
 * memory-ordering argument; the comments here name the pairings. Going lazy
 * and the lazy hit (hazard_lazy_enter, hazard_lazy_resume) are inline in
 * hazard.h. The worker's two slots are struct hazard_hot (hazard_state.h):
 *
 *   lazy  the lazily held context: ctx (a hazard, uncounted), or
 *         ctx | LAZY_OWNED (the worker holds a count reference of its
 *         own: it went lazy on a context whose users were already 0).
 *         Written only by the owner.
 *   drop  a count reference the worker must drop when its lazy period
 *         ends, or DROP_CLOSED while the worker is offline. Changed
 *         only by atomic read-modify-writes (owner and converters).
 */
#include "hazard.h"

#define LAZY_OWNED HAZARD_OWNED    /* contexts are pointer-aligned: bit 0 is free */
#define DROP_CLOSED ((uintptr_t)1) /* offline: converters must not leave anything here */

/* References a single conversion may drop after its scan; see dispose(). */
#define DEFERRED_DROPS 32

static inline struct lmm_ctx *slot_ctx(uintptr_t v)
{
	return (struct lmm_ctx *)(v & ~LAZY_OWNED);
}

static int hazard_domain_init(struct lmm_domain *d)
{
	(void)d;
	/*
	 * Before this domain has a worker, so that lmm_plat_light_fence sees
	 * the final state. If it fails, both fences are full fences.
	 */
	lmm_plat_membarrier_register();
	return 0;
}

/* Drop whatever the drop slot holds: hazard.h peeked and found something. */
void lmm__hazard_drain(struct lmm_worker *w)
{
	/*
	 * Acq_rel: acquire pairs with the converter's release hand-off (its
	 * bulk grab happens before our drop); release orders our lazy period
	 * before any converter that later finds the slot empty. (litmus:
	 * hazard-steal, for the chain of acq_rel RMWs this exchange is one of)
	 */
	uintptr_t v = atomic_exchange_explicit(&w->hot.hazard.drop, 0, memory_order_acq_rel);
	if (v && v != DROP_CLOSED)
		lmm_drop(slot_ctx(v)); /* may be the final drop: the free runs here, on the worker */
}

static void hazard_lazy_release(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	/* Relaxed: our own word. */
	uintptr_t lazy = atomic_load_explicit(&w->hot.hazard.lazy, memory_order_relaxed);
	/*
	 * Release: switch_ctx's last use of ctx happens before any converter
	 * whose acquire load sees the slot move on and then lets ctx go
	 * (litmus: hazard-lazy-release).
	 */
	atomic_store_explicit(&w->hot.hazard.lazy, 0, memory_order_release);
	/*
	 * Store->load, as in hazard_lazy_resume: pairs with the heavy fence
	 * before reclaim_stale() (litmus: hazard-late-handoff).
	 */
	lmm_plat_light_fence();
	if (lazy & LAZY_OWNED)
		lmm_drop(ctx); /* its release orders our last use before the free */
	/* Relaxed peek, as in hazard_lazy_resume. */
	if (atomic_load_explicit(&w->hot.hazard.drop, memory_order_relaxed))
		lmm__hazard_drain(w);
}

static void hazard_worker_reuse(struct lmm_worker *w)
{
	/*
	 * Relaxed: a reused slot stays published (scanners never chase a freed
	 * worker), so converters may read these words now; they read what an
	 * offline worker leaves (nothing held, nothing pending) and find
	 * nothing to act on.
	 */
	atomic_store_explicit(&w->hot.hazard.lazy, 0, memory_order_relaxed);
	atomic_store_explicit(&w->hot.hazard.drop, 0, memory_order_relaxed);
}

static void hazard_worker_offline(struct lmm_worker *w)
{
	/*
	 * The core switched us to init (our lazy period ended above). Close
	 * the drop slot: a converter that read our hazard before it was
	 * cleared finds DROP_CLOSED and keeps its reference instead of leaving
	 * it where nobody would ever drop it. Acq_rel: acquire pairs with a
	 * hand-off's release; release pairs with a converter's acquire load
	 * of CLOSED (our lazy period is over before it drops anything; litmus:
	 * hazard-offline).
	 */
	uintptr_t v = atomic_exchange_explicit(&w->hot.hazard.drop, DROP_CLOSED, memory_order_acq_rel);
	if (v && v != DROP_CLOSED)
		lmm_drop(slot_ctx(v));
}

/* --- the conversion, run by the last user --- */

struct conversion {
	struct lmm_ctx *ctx;
	long spare;        /* references on ctx grabbed in bulk and not handed */
	long grabbed;      /* the bulk size, 0 until the first hazard is found */
	long bulk;         /* upper bound on hand-offs: one per worker */
	uint64_t handed;
	unsigned ndrops;
	struct lmm_ctx *drops[DEFERRED_DROPS];
};

/*
 * We own a reference on v that the worker does not need. References on our
 * own context go back to the bulk; others are dropped after the scan, since
 * such a drop may be the final one (never free inside the scan).
 */
static void dispose(struct conversion *cv, uintptr_t v)
{
	struct lmm_ctx *ctx = slot_ctx(v);
	if (ctx == cv->ctx) {
		cv->spare++;
		cv->handed--;
		return;
	}
	if (unlikely(cv->ndrops == DEFERRED_DROPS)) {
		/*
		 * More than DEFERRED_DROPS occupants stolen by one scan: drop
		 * the batch now. Safe (no lock held; cv->ctx is kept alive by
		 * the users' count reference), only earlier than we like.
		 */
		for (unsigned i = 0; i < cv->ndrops; i++)
			lmm_drop(cv->drops[i]);
		cv->ndrops = 0;
	}
	cv->drops[cv->ndrops++] = ctx;
}

/*
 * Give w the reference we hold on cv->ctx through its drop slot. The slot
 * may hold another reference: take it (we then own it), and keep it only if
 * w may still rely on it, i.e. w is lazy on that context: then it goes back
 * and ours, which w cannot need (it is no longer lazy on cv->ctx), comes out.
 *
 * Every decision is taken on a lazy-slot load made after the read-modify-
 * write that gave us the reference in question. All changes of the drop slot
 * are acq_rel RMWs, so each one synchronizes with every earlier one; the
 * converter that first handed a reference v loaded w's lazy slot == v before
 * its RMW. By read-read coherence our later load sees that store or a later
 * one: if it is not v, w has ended the lazy period the reference was handed
 * for (a later lazy period on v holds its own reference: users are 0, see
 * hazard_lazy_enter), and the acquire of the load pairs with the release
 * stores of the lazy slot, so w's last use of v happens before our drop.
 * (litmus: hazard-steal, hazard-lazy-release)
 */
static void hand_over(struct conversion *cv, struct lmm_worker *w)
{
	uintptr_t held = (uintptr_t)cv->ctx;
	/* Acquire: pairs with offline's release exchange when we read CLOSED
	 * (litmus: hazard-offline). */
	uintptr_t cur = atomic_load_explicit(&w->hot.hazard.drop, memory_order_acquire);

	cv->handed++;
	for (;;) {
		if (cur == DROP_CLOSED) {
			dispose(cv, held); /* w went offline: its lazy periods are over */
			return;
		}
		if (cur) {
			/*
			 * Occupied: is w still lazy on what we hold? Acquire: pairs
			 * with the release stores of the lazy slot, as the comment
			 * above says (litmus: hazard-steal, hazard-lazy-release).
			 */
			uintptr_t lazy = atomic_load_explicit(&w->hot.hazard.lazy, memory_order_acquire);
			if (lazy != held) {
				dispose(cv, held); /* w moved on: nobody needs ours */
				return;
			}
		}
		/*
		 * Acq_rel: the release pairs with the acquire exchange in
		 * lmm__hazard_drain (or the next converter's RMW), publishing
		 * our bulk grab; the acquire pairs with the release RMW of
		 * whoever put cur there (litmus: hazard-steal). Failure: acquire, as
		 * for the first load.
		 */
		if (!atomic_compare_exchange_weak_explicit(&w->hot.hazard.drop, &cur, held,
							   memory_order_acq_rel, memory_order_acquire))
			continue;
		if (!cur)
			return; /* handed; w drops it when its lazy period ends (or reclaim_stale takes it back) */
		/* We own cur now. Acquire: pairs with the lazy slot's release stores
		 * (litmus: hazard-steal). */
		uintptr_t lazy = atomic_load_explicit(&w->hot.hazard.lazy, memory_order_acquire);
		if (lazy != cur) {
			dispose(cv, cur); /* stolen: w is done with it */
			return;
		}
		/* w may be lazy on cur under that very reference: swap it back in. */
		uintptr_t put_back = cur;
		cur = held;
		held = put_back;
	}
}

static void convert_worker(struct lmm_worker *w, void *arg)
{
	struct conversion *cv = arg;
	/*
	 * Acquire: pairs with the release store that ended w's lazy period on
	 * ctx (switch_ctx's last use happens before our final drop), and with
	 * the one that began it. Ordered after users reached 0 by the heavy
	 * fence in hazard_users_zero (litmus: hazard-lazy-release,
	 * hazard-publish).
	 */
	if (atomic_load_explicit(&w->hot.hazard.lazy, memory_order_acquire) != (uintptr_t)cv->ctx)
		return;
	if (!cv->grabbed) {
		/*
		 * One RMW for every hand-off of this conversion. Relaxed
		 * (mmgrab): the users' count reference is still held.
		 */
		atomic_fetch_add_explicit(&ctx_impl(cv->ctx)->count, cv->bulk, memory_order_relaxed);
		cv->grabbed = cv->spare = cv->bulk;
	}
	cv->spare--;
	hand_over(cv, w);
}

/*
 * After the hand-offs: a reference left in the drop slot of a worker that is
 * no longer lazy on its context may never be drained (the worker drains
 * only when a lazy period ends, and may not start another for a long time).
 * Take it back. The heavy fence before this pass pairs with the light fence
 * between a worker's clearing of its lazy slot and its peek at the drop slot
 * (Dekker, made asymmetric): either the worker's peek sees the reference and
 * drains it, or our load below sees the lazy slot cleared. Both may happen;
 * the drop slot's RMWs decide who owns the reference. A worker that starts a
 * new lazy period on that context meanwhile does not need it: users are 0,
 * so it holds its own reference (hazard_lazy_enter). Litmus:
 * hazard-late-handoff.
 */
static void reclaim_stale(struct lmm_worker *w, void *arg)
{
	struct conversion *cv = arg;
	/* Acquire: pairs with the acq_rel RMW that left the reference there
	 * (litmus: hazard-steal). */
	uintptr_t v = atomic_load_explicit(&w->hot.hazard.drop, memory_order_acquire);
	if (!v || v == DROP_CLOSED)
		return;
	/* Acquire: pairs with the release store that ended w's lazy period on v
	 * (litmus: hazard-steal). */
	uintptr_t lazy = atomic_load_explicit(&w->hot.hazard.lazy, memory_order_acquire);
	if (slot_ctx(lazy) == slot_ctx(v))
		return;
	/* Acq_rel like every change of the drop slot (see hand_over; litmus: hazard-steal). */
	if (atomic_compare_exchange_strong_explicit(&w->hot.hazard.drop, &v, 0, memory_order_acq_rel,
						    memory_order_relaxed))
		dispose(cv, v);
}

static void hazard_users_zero(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = ctx_impl(ctx);
	struct lmm_domain *d = c->domain;
	struct conversion cv = { .ctx = ctx, .bulk = (long)d->max_workers };

	/*
	 * Store->load: users reached 0 (lmm_put's decrement) before the mask
	 * and lazy slots are read. Pairs with lmm_plat_light_fence in
	 * hazard_lazy_enter (see there; litmus: hazard-publish).
	 */
	lmm_plat_heavy_fence();
	unsigned scanned = lmm__mask_for_each(c, convert_worker, &cv);
	if (cv.handed) {
		/*
		 * Store->load: our hand-offs before the lazy slots are read again
		 * (reclaim_stale; litmus: hazard-late-handoff).
		 */
		lmm_plat_heavy_fence();
		lmm__mask_for_each(c, reclaim_stale, &cv);
	}
	if (cv.spare)
		/*
		 * The second and last RMW. Relaxed: cannot reach 0 (the users'
		 * reference is still held; its drop is the release).
		 */
		atomic_fetch_sub_explicit(&c->count, cv.spare, memory_order_relaxed);
	stat_add(d, ST_CONVERSIONS, 1);
	LMM_PROBE(conversion, d, ctx, scanned, (unsigned long)cv.handed);
	stat_add(d, ST_SLOTS_SCANNED, scanned);
	if (cv.handed)
		stat_add(d, ST_HAZARDS_CONVERTED, cv.handed);
	/* Stolen references that w no longer needed: any of these may free. */
	for (unsigned i = 0; i < cv.ndrops; i++)
		lmm_drop(cv.drops[i]);
}

static void hazard_count_zero(struct lmm_ctx *ctx)
{
	/*
	 * Every worker with ctx installed holds a counted reference: its task's,
	 * its own (LAZY_OWNED) or a converted hazard in its drop slot.
	 */
	lmm__ctx_release(ctx);
}

const struct lmm_scheme_ops lmm_scheme_hazard = {
	.id = LMM_SCHEME_HAZARD,
	.domain_init = hazard_domain_init,
	.worker_reuse = hazard_worker_reuse,
	.worker_offline = hazard_worker_offline,
	.lazy_release = hazard_lazy_release,
	.users_zero = hazard_users_zero,
	.count_zero = hazard_count_zero,
};
