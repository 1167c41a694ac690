/* SPDX-License-Identifier: MIT */
/*
 * The peers' side of the bench's interface: one generic switch, the state
 * machine of lmm_switch (lazymm(7): a worker's active and current
 * contexts), calling the peer's primitive where a lazymm scheme's hooks
 * run; and atomic-refcount, the peer written here with C11 atomics.
 */
#include <string.h>

#include "bench.h"

static struct bctx peer_init_ctx; /* the peers' init context: never retired */

BENCH_CALL static void peer_switch(struct bthread *t, struct bctx *next)
{
	const struct peer_ops *p = t->peer;
	struct bctx *active = t->active;

	if (!next) {
		if (t->current) {
			t->current = NULL;
			if (active != &peer_init_ctx)
				p->lazy_enter(t, active);
		}
	} else if (next == active) {
		if (!t->current) {
			t->current = next;
			if (active != &peer_init_ctx)
				p->lazy_resume(t, active);
		}
	} else {
		bool was_lazy = !t->current && active != &peer_init_ctx;
		t->current = next;
		bench_switch_ctx(active, next);
		t->active = next;
		if (was_lazy)
			p->lazy_release(t, active);
	}
}

static void peer_unlazy(struct bthread *t)
{
	struct bctx *active = t->active;
	if (!t->current && active != &peer_init_ctx) {
		bench_switch_ctx(active, &peer_init_ctx);
		t->active = &peer_init_ctx;
		t->peer->lazy_release(t, active);
	}
}

static inline void loop_switch(struct bthread *t, struct bctx *next)
{
	peer_switch(t, next);
}

static inline void loop_idle_enter(struct run *r, struct bthread *t)
{
	(void)r;
	if (t->peer->idle_unlazy)
		peer_unlazy(t);
	if (t->peer->idle_enter)
		t->peer->idle_enter(t);
}

static inline void loop_idle_exit(struct run *r, struct bthread *t)
{
	(void)r;
	if (t->peer->idle_exit)
		t->peer->idle_exit(t);
}

#include "loops.h"

static void peer_open(struct run *r, unsigned max_workers)
{
	(void)max_workers;
	r->driver.peer = r->im->peer;
	r->driver.is_driver = true;
	r->driver.active = &peer_init_ctx;
	r->im->peer->thread_enter(&r->driver);
}

static void peer_close(struct run *r)
{
	r->im->peer->thread_exit(&r->driver);
}

static void peer_put(struct run *r, struct bctx *c)
{
	r->im->peer->retire(&r->driver, c);
}

static void peer_barrier(struct run *r)
{
	r->im->peer->barrier(&r->driver);
}

static void peer_thread_enter(struct run *r, struct bthread *t)
{
	t->peer = r->im->peer;
	t->active = &peer_init_ctx;
	t->peer->thread_enter(t);
}

static void peer_thread_leave(struct run *r, struct bthread *t)
{
	(void)r;
	peer_switch(t, NULL);
	peer_unlazy(t);
	t->peer->thread_exit(t);
}

const struct impl_ops peer_generic_ops = {
	.open = peer_open,
	.close = peer_close,
	.ctx_put = peer_put,
	.barrier = peer_barrier,
	.thread_enter = peer_thread_enter,
	.thread_leave = peer_thread_leave,
	.sw = peer_switch,
	.idle_enter = loop_idle_enter,
	.idle_exit = loop_idle_exit,
	LOOPS_OPS,
};

/* atomic-refcount: what refcount does, written inline with C11 atomics. */

static void arc_drop(struct bctx *c)
{
	/*
	 * Acq_rel: the release half orders our use of c before its free; the
	 * acquire half (on the last drop) pairs with every earlier drop's
	 * release. One RMW instead of release + fence: the same instruction on
	 * x86, and ThreadSanitizer, which ignores standalone fences, sees it.
	 */
	if (atomic_fetch_sub_explicit(&c->count, 1, memory_order_acq_rel) == 1)
		bench_ctx_free(c);
}

static void arc_lazy_enter(struct bthread *t, struct bctx *c)
{
	(void)t;
	/* Relaxed: the task leaving c still holds a reference. */
	atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
}

static void arc_lazy_resume(struct bthread *t, struct bctx *c)
{
	(void)t;
	/* Relaxed: the resumed task holds its own reference, this is never the last. */
	atomic_fetch_sub_explicit(&c->count, 1, memory_order_relaxed);
}

static void arc_lazy_release(struct bthread *t, struct bctx *c)
{
	(void)t;
	arc_drop(c);
}

static void arc_retire(struct bthread *driver, struct bctx *c)
{
	(void)driver;
	arc_drop(c);
}

static void arc_nothing(struct bthread *t)
{
	(void)t;
}

static const char *arc_init(void)
{
	return NULL;
}

const struct peer_ops peer_atomic_refcount = {
	.name = "atomic-refcount",
	.init = arc_init,
	.thread_enter = arc_nothing,
	.thread_exit = arc_nothing,
	.lazy_enter = arc_lazy_enter,
	.lazy_resume = arc_lazy_resume,
	.lazy_release = arc_lazy_release,
	.idle_unlazy = false,
	.retire = arc_retire,
	.barrier = arc_nothing,
	.ctx_bytes = sizeof(atomic_long),
	.worker_bytes = 0,
};
