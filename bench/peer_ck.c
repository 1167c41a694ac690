/* SPDX-License-Identifier: MIT */
/*
 * Concurrency Kit peers (libck-dev).
 *
 * ck-hp: the lazy window is one hazard pointer. Publishing it needs no
 * fence here: the worker only goes lazy on a context its task still holds,
 * and the owner retires it only after the worker's hand-over (the round's
 * mutex in final-drop), which orders the hazard store before the scan. A
 * hazard may stay published across a sleep; the free then waits for the
 * sleeper, exactly like a counted reference.
 *
 * ck-epoch: the lazy window is an epoch section (ck_epoch_begin/end); the
 * retired context goes through ck_epoch_call, and the owner's barrier is
 * ck_epoch_barrier. A section must not span a sleep (it stalls every grace
 * period), so the idle path closes the window first.
 */
#include <ck_epoch.h>
#include <ck_hp.h>
#include <stdlib.h>

#include "bench.h"

static struct bctx *bctx_of_peer(void *peer_area)
{
	return (struct bctx *)(void *)((char *)peer_area - offsetof(struct bctx, peer));
}

/* --- ck-hp --- */

_Static_assert(sizeof(ck_hp_hazard_t) <= 64, "peer area");

struct hp_thread {
	ck_hp_record_t record;
	void *slots[1];
};

static ck_hp_t hp;

static void hp_destroy(void *data)
{
	bench_ctx_free(data);
}

static const char *hp_init(void)
{
	/* Reclaim only when asked (the barrier): the threshold is never reached by one free. */
	ck_hp_init(&hp, 1, 1u << 20, hp_destroy);
	return NULL;
}

static void hp_thread_enter(struct bthread *t)
{
	ck_hp_record_t *r = ck_hp_recycle(&hp);
	if (!r) {
		struct hp_thread *h = aligned_alloc(64, (sizeof(*h) + 63) & ~(size_t)63);
		if (!h)
			abort();
		ck_hp_register(&hp, &h->record, h->slots);
		r = &h->record;
	}
	t->peer_record = r;
}

static void hp_thread_exit(struct bthread *t)
{
	ck_hp_set(t->peer_record, 0, NULL);
	ck_hp_unregister(t->peer_record);
}

static void hp_lazy_enter(struct bthread *t, struct bctx *c)
{
	ck_hp_set(t->peer_record, 0, c);
}

static void hp_lazy_leave(struct bthread *t, struct bctx *c)
{
	(void)c;
	ck_hp_set(t->peer_record, 0, NULL);
}

static void hp_retire(struct bthread *driver, struct bctx *c)
{
	ck_hp_free(driver->peer_record, (ck_hp_hazard_t *)(void *)c->peer, c, c);
}

static void hp_barrier(struct bthread *driver)
{
	ck_hp_reclaim(driver->peer_record);
}

const struct peer_ops peer_ck_hp = {
	.name = "ck-hp",
	.init = hp_init,
	.thread_enter = hp_thread_enter,
	.thread_exit = hp_thread_exit,
	.lazy_enter = hp_lazy_enter,
	.lazy_resume = hp_lazy_leave,
	.lazy_release = hp_lazy_leave,
	.idle_unlazy = false,
	.retire = hp_retire,
	.barrier = hp_barrier,
	.ctx_bytes = sizeof(ck_hp_hazard_t),
	.worker_bytes = sizeof(struct hp_thread),
};

/* --- ck-epoch --- */

_Static_assert(sizeof(ck_epoch_entry_t) <= 64, "peer area");

static ck_epoch_t epoch;

static void epoch_free_cb(ck_epoch_entry_t *e)
{
	bench_ctx_free(bctx_of_peer(e));
}

static const char *epoch_init(void)
{
	ck_epoch_init(&epoch);
	return NULL;
}

static void epoch_thread_enter(struct bthread *t)
{
	ck_epoch_record_t *r = ck_epoch_recycle(&epoch, NULL);
	if (!r) {
		r = aligned_alloc(64, (sizeof(*r) + 63) & ~(size_t)63);
		if (!r)
			abort();
		ck_epoch_register(&epoch, r, NULL);
	}
	t->peer_record = r;
}

static void epoch_thread_exit(struct bthread *t)
{
	ck_epoch_unregister(t->peer_record);
}

static void epoch_lazy_enter(struct bthread *t, struct bctx *c)
{
	(void)c;
	ck_epoch_begin(t->peer_record, NULL);
}

static void epoch_lazy_leave(struct bthread *t, struct bctx *c)
{
	(void)c;
	ck_epoch_end(t->peer_record, NULL);
}

static void epoch_retire(struct bthread *driver, struct bctx *c)
{
	ck_epoch_call(driver->peer_record, (ck_epoch_entry_t *)(void *)c->peer, epoch_free_cb);
}

static void epoch_barrier(struct bthread *driver)
{
	ck_epoch_barrier(driver->peer_record);
}

const struct peer_ops peer_ck_epoch = {
	.name = "ck-epoch",
	.init = epoch_init,
	.thread_enter = epoch_thread_enter,
	.thread_exit = epoch_thread_exit,
	.lazy_enter = epoch_lazy_enter,
	.lazy_resume = epoch_lazy_leave,
	.lazy_release = epoch_lazy_leave,
	.idle_unlazy = true,
	.retire = epoch_retire,
	.barrier = epoch_barrier,
	.ctx_bytes = sizeof(ck_epoch_entry_t),
	.worker_bytes = sizeof(ck_epoch_record_t),
};
