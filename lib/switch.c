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
#include "lmm_scheme_hooks.h"

/*
 * Every built scheme's NAME.h (lmm_scheme_hooks.h includes them all, from
 * the list) declares the two hooks of the lazy fast path, inlined here:
 *
 *   NAME_lazy_enter(w, ctx, careful)   w goes lazy on ctx (never init)
 *   NAME_lazy_resume(w, ctx, careful)  the lazy hit: ctx is current again
 *
 * and four constants:
 *
 *   LMM_NAME_LAZY_HOOKS         0: both hooks are empty, the lazy hit ends
 *                               at the store of current
 *   LMM_NAME_HIT_ON_INIT        1: the resume hook runs at a hit on init too
 *                               (it finds nothing to undo there): no test
 *   LMM_NAME_IF_FAST_COPY(...)  its arguments if lmm_switch has a copy of
 *                               its body for the scheme, else nothing
 *   LMM_NAME_INLINE             1: lazymm.h's LMM_INLINE path has the
 *                               scheme's hooks (a case of its own there,
 *                               built from the same lmm__inline_* pieces);
 *                               its workers on the fast copy take it
 *
 * Everything else a scheme does sits behind its ops table. These two run on
 * every lazy enter and every lazy hit, and there an indirect call costs more
 * than the hook: hazard's round trip took 7.1 ns through the ops table
 * against a floor of 2.3 ns (bench lazy-roundtrip).
 *
 * Both hooks run outside lmm_switch's critical section (switch_body says
 * why that is safe): a scheme's signal handler may run between any two
 * lines of them, and a hook that shares state with its handler says why that
 * is harmless. ctx is the init context only at a hit whose scheme asks for
 * it (LMM_NAME_HIT_ON_INIT).
 *
 * kind, below, is the scheme's id (enum lmm_scheme): a constant in each
 * fast copy, so the switches on it fold away; w->kind in the general copy.
 */
static inline __attribute__((always_inline)) void lazy_enter_hook(struct lmm_worker *w, struct lmm_ctx *ctx,
								  unsigned kind, bool careful)
{
	switch (kind) {
#define LAZY_ENTER(name, NAME)                        \
	case LMM_SCHEME_##NAME:                       \
		name##_lazy_enter(w, ctx, careful);   \
		break;
		LMM_SCHEME_LIST(LAZY_ENTER)
#undef LAZY_ENTER
	}
}

static inline __attribute__((always_inline)) void lazy_resume_hook(struct lmm_worker *w, struct lmm_ctx *ctx,
								   unsigned kind, bool careful)
{
	switch (kind) {
#define LAZY_RESUME(name, NAME)                       \
	case LMM_SCHEME_##NAME:                       \
		name##_lazy_resume(w, ctx, careful);  \
		break;
		LMM_SCHEME_LIST(LAZY_RESUME)
#undef LAZY_RESUME
	}
}

/* LMM_NAME_LAZY_HOOKS of kind's scheme. */
static inline __attribute__((always_inline)) bool kind_has_hooks(unsigned kind)
{
	switch (kind) {
#define HAS_HOOKS(name, NAME)   \
	case LMM_SCHEME_##NAME: \
		return LMM_##NAME##_LAZY_HOOKS;
		LMM_SCHEME_LIST(HAS_HOOKS)
#undef HAS_HOOKS
	}
	return false;
}

/* LMM_NAME_HIT_ON_INIT of kind's scheme. */
static inline __attribute__((always_inline)) bool kind_hit_on_init(unsigned kind)
{
	switch (kind) {
#define HIT_ON_INIT(name, NAME) \
	case LMM_SCHEME_##NAME: \
		return LMM_##NAME##_HIT_ON_INIT;
		LMM_SCHEME_LIST(HIT_ON_INIT)
#undef HIT_ON_INIT
	}
	return false;
}

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
	/* Relaxed: set by this thread's own handler around its work (signal.c). */
	unsigned flags = atomic_load_explicit(&w->in_handler, memory_order_relaxed) ? LMM_SWITCH_SIGNAL : 0;
	/* No handler runs scheme work inside: it defers while critical (signal.c). */
	w->in_switch_ctx = true;
	w->domain->ops.switch_ctx(w, prev, next, flags);
	w->in_switch_ctx = false;
	if (prev_lazy && w->scheme->switched_away)
		w->scheme->switched_away(w, prev);
	/*
	 * Release: switch_ctx's last use of prev happens before any scanner that
	 * reads active != prev (shootdown, LMM_F_DEBUG) lets prev be freed
	 * (litmus: install-active).
	 */
	atomic_store_explicit(&w->active, next, memory_order_release);
	wstat_inc(&w->stats.installs);
	if (prev_lazy)
		wstat_inc(&w->stats.lazy_ended);
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
		/* Pairs with the seq_cst fence in lmm_membarrier before it reads current
		 * (litmus: membarrier-published). */
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
		/* Release: pairs with the fence lmm_membarrier issues after reading current
		 * (litmus: membarrier-leaving). */
		atomic_thread_fence(memory_order_release);
}

/*
 * The lazy hit: ctx, lazily held, becomes current again; nothing installed.
 * kind, careful: see switch_body.
 */
static inline __attribute__((always_inline)) void lazy_hit(struct lmm_worker *w, struct lmm_ctx *ctx,
							   unsigned kind, bool careful)
{
	/* Relaxed: lmm_membarrier's argument is in docs/design.md. */
	atomic_store_explicit(&w->current, ctx, memory_order_relaxed);
	if (careful)
		current_published(w);
	/*
	 * Lazy on init needs no hold (init is never freed): going lazy on it
	 * took no count reference, so none is given back here. A scheme whose
	 * hook finds nothing to undo on init (hazard: an empty lazy slot; rcu: no
	 * counted hold) and only does what any hit may do, drain the drop slot
	 * or report a quiescent state, needs no such test (LMM_NAME_HIT_ON_INIT).
	 */
	if (!kind_has_hooks(kind) || (!kind_hit_on_init(kind) && ctx == w->init))
		return;
	/*
	 * Pairs with a signal handler on this thread: from here on it sees us
	 * running ctx, not lazy on it, and leaves the lazy state alone while
	 * the hook reads it (rcu_lazy_resume).
	 */
	atomic_signal_fence(memory_order_seq_cst);
	lazy_resume_hook(w, ctx, kind, careful);
	/* No counter: lmm_stats derives lazy hits (worker_counters). */
}

/* A task of cur gives way to a context-less one: cur stays installed, lazily. */
static inline __attribute__((always_inline)) void lazy_enter(struct lmm_worker *w, struct lmm_ctx *cur,
							     unsigned kind, bool careful)
{
	if (careful)
		current_leaving(w);
	/* Relaxed: lmm_membarrier's argument is in docs/design.md. */
	atomic_store_explicit(&w->current, NULL, memory_order_relaxed);
	if (cur == w->init)
		return;
	wstat_inc(&w->stats.lazy_enters);
	lazy_enter_hook(w, cur, kind, careful); /* cur == active: current is NULL or the active context */
}

/* A switch path entered from inside switch_ctx would install under the hook's feet. */
static void reentry_check(struct lmm_worker *w, const char *call)
{
	if (w->in_switch_ctx)
		lmm__die(call, "called from inside switch_ctx");
}

/* Everything but going lazy and the lazy hit: in the critical section. */
static __attribute__((noinline)) void switch_slow(struct lmm_worker *w, struct lmm_ctx *cur,
						  struct lmm_ctx *next)
{
	reentry_check(w, "lmm_switch");
	critical_enter_outer(w);
	/* Relaxed: own state, read again now that no handler can change it. */
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	if (next == active) {
		if (!cur)
			lazy_hit(w, next, w->kind, true); /* a handler moved us to init, and next is init */
	} else {
		/* Off the fast path, so always: a stranger's mask is not sized for our ids. */
		if (ctx_impl(next)->magic != CTX_MAGIC)
			lmm__die("lmm_switch", "%p is not a live context", (void *)next);
		if (ctx_impl(next)->domain != w->domain)
			lmm__die("lmm_switch", "context %p belongs to another domain than worker %u's",
				 (void *)next, w->id);
		if (cur)
			current_leaving(w);
		/* Relaxed: as in lazy_hit. */
		atomic_store_explicit(&w->current, next, memory_order_relaxed);
		current_published(w);
		install(w, next, !cur && active != w->init);
	}
	critical_exit_outer(w);
}

/*
 * Going lazy and the lazy hit run outside the critical section that brackets
 * every other switch against the domain's signal handler: it cost shootdown
 * and rcu about a quarter of a round trip, and neither needs it. A handler
 * ends a lazy hold only on a context whose count reached 0 (shootdown's shoot_self, rcu's settle), and
 * these two paths hold a reference all along: going lazy, the leaving task's,
 * until after we return; at the lazy hit, the reference the caller holds on
 * next. So a handler that runs between any two of their steps finds active
 * alive, may at most count the hold (rcu), and never moves active. current is
 * always NULL or active, so cur stands for active when it is not NULL.
 *
 * kind: the scheme whose lazy hooks run (enum lmm_scheme), a constant in
 * each fast copy. careful: the general copy, which tests LMM_F_DEBUG and the
 * membarrier fallback at run time; false in the fast copies, whose workers
 * have neither.
 */
static inline __attribute__((always_inline)) void switch_body(struct lmm_worker *w, struct lmm_ctx *next,
							      unsigned kind, bool careful)
{
	if (careful && unlikely(w->debug) && atomic_load_explicit(&w->critical, memory_order_relaxed))
		lmm__die("lmm_switch", "called from inside the switch path (a hook or a handler)");
	/* Relaxed: only this thread writes current. */
	struct lmm_ctx *cur = atomic_load_explicit(&w->current, memory_order_relaxed);

	if (!next) {
		if (likely(cur))
			lazy_enter(w, cur, kind, careful);
		return;
	}
	/* Relaxed: own state; a handler cannot move active off a context we hold (above). */
	if (likely(!cur && next == atomic_load_explicit(&w->active, memory_order_relaxed))) {
		lazy_hit(w, next, kind, careful);
		return;
	}
	switch_slow(w, cur, next);
}

/*
 * The general copy: LMM_F_DEBUG's checks, the membarrier fallback's fences,
 * and the refcount scheme, whose atomics dwarf a few more compares.
 */
static __attribute__((noinline)) void switch_general(struct lmm_worker *w, struct lmm_ctx *next)
{
	if (w->idle)
		lmm__die("lmm_switch", "called between lmm_idle_enter and lmm_idle_exit");
	switch_body(w, next, w->kind, true);
}

/*
 * lmm_switch's copies of the body: one per scheme that asks for a fast copy
 * (LMM_NAME_IF_FAST_COPY), picked by w->path through lmm_switch's one
 * table (switch_copies); each has its scheme's hooks inline and tests
 * nothing at run time. The general copy tests LMM_F_DEBUG, the membarrier fallback and the
 * idle bracket. A worker whose scheme has no fast copy, or that needs one of
 * those tests, takes the general copy: a path is never shared between
 * schemes, and a scheme that asks for none never has a path of its own.
 */
enum switch_path {
	PATH_GENERAL = LMM_PATH_GENERAL,
#define PATH_ENUM(name, NAME) LMM_##NAME##_IF_FAST_COPY(PATH_##NAME, )
	LMM_SCHEME_LIST(PATH_ENUM)
#undef PATH_ENUM
};

static unsigned char switch_path(const struct lmm_worker *w)
{
	if (w->debug || w->membarrier_fence)
		return PATH_GENERAL;
	switch (w->kind) {
#define PATH_OF(name, NAME) LMM_##NAME##_IF_FAST_COPY(case LMM_SCHEME_##NAME: return PATH_##NAME;)
		LMM_SCHEME_LIST(PATH_OF)
#undef PATH_OF
	default:
		return PATH_GENERAL;
	}
}

/*
 * The LMM_INLINE path's one test (lazymm.h): a worker takes it exactly when
 * it takes its scheme's fast copy here and the scheme has inline pieces
 * (LMM_NAME_INLINE); its inline kind is then the scheme's id, which the
 * inline path's cases name. Otherwise 0: inline callers call lmm_switch,
 * whose general copy checks LMM_F_DEBUG, the membarrier fallback and the
 * idle bracket. A scheme the header does not know never gets a kind.
 */
static unsigned char inline_kind(const struct lmm_worker *w, unsigned char path)
{
	if (path == PATH_GENERAL)
		return 0;
	switch (w->kind) {
#define INLINE_OF(name, NAME)   \
	case LMM_SCHEME_##NAME: \
		return LMM_##NAME##_INLINE ? LMM_SCHEME_##NAME : 0;
		LMM_SCHEME_LIST(INLINE_OF)
#undef INLINE_OF
	default:
		return 0;
	}
}

/* At online: the paths outside the idle bracket, and the bracket's state. */
void lmm__switch_path_set(struct lmm_worker *w)
{
	w->run_path = switch_path(w);
	w->run_inline_kind = inline_kind(w, w->run_path);
	worker_idle_set(w, w->idle);
}

/*
 * The layout LMM_INLINE callers were built against (lazymm.h): each
 * inline caller's load refers to this symbol, so a library of another
 * layout, which names it otherwise, is refused at load time.
 */
LMM_INLINE_EXPORT const unsigned char LMM_INLINE_ABI_SYMBOL = LMM_INLINE_ABI;

/*
 * The LMM_INLINE path's rare halves, as the fast copies' (the scheme's
 * NAME.h): hazard going lazy on a context whose users are gone; hazard's
 * counted hold or drop slot and rcu's counted hold or waiting grace period
 * at the lazy hit. Only for a worker whose inline kind is the scheme's.
 */
void lmm__inline_enter_slow(struct lmm_worker *w, struct lmm_ctx *ctx)
{
#ifdef LMM_HAVE_HAZARD
	if (w->inline_kind == LMM_SCHEME_HAZARD) {
		hazard_enter_counted(w, ctx);
		return;
	}
#endif
	lmm__die("lmm_switch", "worker %u's inline path has no slow half for going lazy on %p", w->id,
		 (void *)ctx);
}

void lmm__inline_resume_slow(struct lmm_worker *w, struct lmm_ctx *ctx, uintptr_t lazy)
{
	(void)lazy; /* hazard's slot as the inline path read it; rcu reads its own words */
	switch (w->inline_kind) {
#ifdef LMM_HAVE_HAZARD
	case LMM_SCHEME_HAZARD:
		hazard_resume_slow(w, ctx, lazy);
		return;
#endif
#ifdef LMM_HAVE_RCU
	case LMM_SCHEME_RCU:
		lmm__rcu_resume_slow(w, ctx);
		return;
#endif
	default:
		lmm__die("lmm_switch", "worker %u's inline path has no slow half for the lazy hit on %p", w->id,
			 (void *)ctx);
	}
}

/*
 * lmm_switch from a thread that is not w's owner: abort. Out of line and
 * with lmm_switch's signature, so that lmm_switch reaches it by a tail
 * jump and needs no stack frame of its own for a call it never returns from.
 */
static __attribute__((noinline, cold)) void switch_foreign(struct lmm_worker *w, struct lmm_ctx *next)
{
	(void)next;
	owner_check(w, "lmm_switch");
}

/*
 * The fast copies, one function each, and the table: the same load and
 * indirect jump for every scheme, where a switch statement's tests come
 * in an order each compiler chooses (and the first scheme tested is
 * reached soonest).
 */
#define FAST_COPY(name, NAME)                                                           \
	LMM_##NAME##_IF_FAST_COPY(static void switch_copy_##name(struct lmm_worker *w,  \
								 struct lmm_ctx *next) \
				  { switch_body(w, next, LMM_SCHEME_##NAME, false); })
LMM_SCHEME_LIST(FAST_COPY)
#undef FAST_COPY

static void (*const switch_copies[])(struct lmm_worker *w, struct lmm_ctx *next) = {
	[PATH_GENERAL] = switch_general,
#define COPY_OF(name, NAME) LMM_##NAME##_IF_FAST_COPY([PATH_##NAME] = switch_copy_##name, )
	LMM_SCHEME_LIST(COPY_OF)
#undef COPY_OF
};

void lmm_switch(struct lmm_worker *w, struct lmm_ctx *next)
{
	if (unlikely(lmm__self != w)) {
		switch_foreign(w, next);
		return;
	}
	switch_copies[w->path](w, next);
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
	reentry_check(w, "lmm_unlazy");
	lmm__unlazy(w);
}

struct lmm_ctx *lmm_active(const struct lmm_worker *w)
{
	/*
	 * Relaxed: exact on the owner while a context is current; while it is
	 * lazy, its signal handler (shootdown, rcu) may move it to init at any
	 * time. A hint on any other thread.
	 */
	return atomic_load_explicit(&((struct lmm_worker *)w)->active, memory_order_relaxed);
}

struct lmm_ctx *lmm_current(const struct lmm_worker *w)
{
	/* Relaxed: exact on the owner (no handler changes it); a hint on any other thread. */
	return atomic_load_explicit(&((struct lmm_worker *)w)->current, memory_order_relaxed);
}
