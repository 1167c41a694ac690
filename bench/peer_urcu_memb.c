/* SPDX-License-Identifier: MIT */
/*
 * Peer urcu-memb: the lazy window is a liburcu membarrier-flavour read-side
 * section (the writer pays with membarrier(2), readers only with compiler
 * barriers); the retired context goes through call_rcu. A section must not
 * span a sleep, so the idle path closes the window first.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

#include "bench.h"

_Static_assert(sizeof(struct rcu_head) <= 64, "peer area");

static struct rcu_head *head_of(struct bctx *c)
{
	return (struct rcu_head *)(void *)c->peer;
}

static void free_cb(struct rcu_head *h)
{
	bench_ctx_free((struct bctx *)(void *)((char *)h - offsetof(struct bctx, peer)));
}

static const char *memb_init(void)
{
	return NULL;
}

static void memb_thread_enter(struct bthread *t)
{
	(void)t;
	urcu_memb_register_thread();
}

static void memb_thread_exit(struct bthread *t)
{
	(void)t;
	urcu_memb_unregister_thread();
}

static void memb_lazy_enter(struct bthread *t, struct bctx *c)
{
	(void)t; (void)c;
	urcu_memb_read_lock();
}

static void memb_lazy_leave(struct bthread *t, struct bctx *c)
{
	(void)t; (void)c;
	urcu_memb_read_unlock();
}

static void memb_retire(struct bthread *driver, struct bctx *c)
{
	(void)driver;
	urcu_memb_call_rcu(head_of(c), free_cb);
}

static void memb_barrier(struct bthread *driver)
{
	(void)driver;
	urcu_memb_barrier();
}

const struct peer_ops peer_urcu_memb = {
	.name = "urcu-memb",
	.init = memb_init,
	.thread_enter = memb_thread_enter,
	.thread_exit = memb_thread_exit,
	.lazy_enter = memb_lazy_enter,
	.lazy_resume = memb_lazy_leave,
	.lazy_release = memb_lazy_leave,
	.idle_unlazy = true,
	.retire = memb_retire,
	.barrier = memb_barrier,
	.ctx_bytes = sizeof(struct rcu_head),
	.worker_bytes = sizeof(struct urcu_reader),
};
