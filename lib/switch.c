/* SPDX-License-Identifier: MIT */
/*
 * The switch path: the single place where a worker's current and active
 * contexts change (Lutomirski's consolidation). Mirrors context_switch():
 *
 *   to a context-less task: current = NULL, active kept: the lazy hold begins
 *   back to the lazy context: current = active: the lazy hit, nothing installed
 *   to another context:      switch_ctx(prev, next), active = next, and only
 *                            then the lazy hold on prev ends (finish_task_switch)
 */
#include "internal.h"

static inline void owner_check(struct lmm_worker *w, const char *call)
{
	if (unlikely(lmm__self != w))
		lmm__die(call, "worker %p used from a thread that is not that worker", (void *)w);
}

/* Install next in place of active; returns the context that was installed. */
static struct lmm_ctx *install(struct lmm_worker *w, struct lmm_ctx *next, bool prev_lazy)
{
	/* Relaxed: only this thread writes active. */
	struct lmm_ctx *prev = atomic_load_explicit(&w->active, memory_order_relaxed);

	if (next != w->init)
		mask_set(ctx_impl(next), w->id);
	w->domain->ops.switch_ctx(w, prev, next);
	if (prev_lazy && w->scheme->switched_away)
		w->scheme->switched_away(w, prev);
	/*
	 * Release: switch_ctx's last use of prev happens before any scanner that
	 * reads active != prev (shootdown, LMM_F_DEBUG) lets prev be freed.
	 */
	atomic_store_explicit(&w->active, next, memory_order_release);
	wstat_inc(&w->stats.installs);
	if (prev_lazy && w->scheme->lazy_release)
		w->scheme->lazy_release(w, prev);
	if (w->scheme->installed)
		w->scheme->installed(w);
	return prev;
}

/*
 * current just became next. lmm_membarrier's fallback reads current without
 * the worker's help and skips workers that do not run its context, so a
 * worker that makes the context current after that read must still see what
 * the caller wrote before the call: the caller fences between its writes and
 * its read of current, the worker between its write of current and its first
 * access for the context (store->load both ways, docs/design.md). With
 * membarrier(2) the kernel orders every thread itself, the flag is false and
 * the fast path stays fence-free.
 */
static inline void current_published(struct lmm_worker *w)
{
	if (unlikely(w->membarrier_fence))
		/* Pairs with the seq_cst fence in lmm_membarrier before it reads current. */
		atomic_thread_fence(memory_order_seq_cst);
}

/*
 * current is about to stop being a context. A fallback caller that reads the
 * new value skips us, so the accesses we made for the old context must be
 * visible to it after its return (docs/design.md, lmm_membarrier).
 */
static inline void current_leaving(struct lmm_worker *w)
{
	if (unlikely(w->membarrier_fence))
		/* Release: pairs with the fence lmm_membarrier issues after reading current. */
		atomic_thread_fence(memory_order_release);
}

void lmm_switch(struct lmm_worker *w, struct lmm_ctx *next)
{
	owner_check(w, "lmm_switch");
	/* Relaxed: only this thread (and its own signal handler, see critical) writes these. */
	struct lmm_ctx *cur = atomic_load_explicit(&w->current, memory_order_relaxed);

	critical_enter_outer(w);
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	/* Lazy on init needs no hold: init is never freed (compared on our own line). */
	bool real = active != w->init;
	if (!next) {
		if (cur) {
			current_leaving(w);
			/* Relaxed: lmm_membarrier's argument is in docs/design.md. */
			atomic_store_explicit(&w->current, NULL, memory_order_relaxed);
			if (real) {
				if (w->scheme->lazy_enter)
					w->scheme->lazy_enter(w, active);
				wstat_inc(&w->stats.lazy_enters);
			}
		}
	} else if (next == active) {
		if (!cur) {
			atomic_store_explicit(&w->current, next, memory_order_relaxed);
			current_published(w);
			if (real) {
				if (w->scheme->lazy_resume)
					w->scheme->lazy_resume(w, active);
				wstat_inc(&w->stats.lazy_hits);
			}
		}
	} else {
		if (unlikely(w->debug) && ctx_impl(next)->magic != CTX_MAGIC)
			lmm__die("lmm_switch", "%p is not a live context", (void *)next);
		if (cur)
			current_leaving(w);
		atomic_store_explicit(&w->current, next, memory_order_relaxed);
		current_published(w);
		install(w, next, !cur && real);
	}
	critical_exit_outer(w);
}

/* lmm_unlazy without the owner check; also used by offline and schemes. */
void lmm__unlazy(struct lmm_worker *w)
{
	critical_enter(w);
	/* Relaxed: own state, see lmm_switch. */
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	if (!atomic_load_explicit(&w->current, memory_order_relaxed) && active != w->init) {
		install(w, w->init, true);
		wstat_inc(&w->stats.unlazies);
	}
	critical_exit(w);
}

void lmm_unlazy(struct lmm_worker *w)
{
	owner_check(w, "lmm_unlazy");
	lmm__unlazy(w);
}

struct lmm_ctx *lmm_active(const struct lmm_worker *w)
{
	/* Relaxed: exact on the owner; a hint on any other thread. */
	return atomic_load_explicit(&((struct lmm_worker *)w)->active, memory_order_relaxed);
}

struct lmm_ctx *lmm_current(const struct lmm_worker *w)
{
	/* Relaxed: exact on the owner; a hint on any other thread. */
	return atomic_load_explicit(&((struct lmm_worker *)w)->current, memory_order_relaxed);
}
