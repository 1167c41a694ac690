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

	if (!ctx_is_init(next))
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
	if (prev_lazy)
		w->scheme->lazy_release(w, prev);
	return prev;
}

void lmm_switch(struct lmm_worker *w, struct lmm_ctx *next)
{
	owner_check(w, "lmm_switch");
	/* Relaxed: only this thread (and its own signal handler, see critical) writes these. */
	struct lmm_ctx *cur = atomic_load_explicit(&w->current, memory_order_relaxed);

	critical_enter(w);
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	if (!next) {
		if (cur) {
			/* Relaxed: lmm_membarrier's argument is in docs/design.md. */
			atomic_store_explicit(&w->current, NULL, memory_order_relaxed);
			if (!ctx_is_init(active)) {
				w->scheme->lazy_enter(w, active);
				wstat_inc(&w->stats.lazy_enters);
			}
		}
	} else if (next == active) {
		if (!cur) {
			atomic_store_explicit(&w->current, next, memory_order_relaxed);
			if (!ctx_is_init(active)) {
				w->scheme->lazy_resume(w, active);
				wstat_inc(&w->stats.lazy_hits);
			}
		}
	} else {
		if (unlikely(w->debug) && ctx_impl(next)->magic != CTX_MAGIC)
			lmm__die("lmm_switch", "%p is not a live context", (void *)next);
		atomic_store_explicit(&w->current, next, memory_order_relaxed);
		install(w, next, !cur && !ctx_is_init(active));
	}
	critical_exit(w);
}

/* lmm_unlazy without the owner check; also used by offline and schemes. */
void lmm__unlazy(struct lmm_worker *w)
{
	critical_enter(w);
	/* Relaxed: own state, see lmm_switch. */
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	if (!atomic_load_explicit(&w->current, memory_order_relaxed) && !ctx_is_init(active)) {
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
