/* SPDX-License-Identifier: MIT */
/*
 * Peer urcu-qsbr: the lazy window is a liburcu QSBR read-side section; the
 * retired context goes through call_rcu. QSBR readers announce quiescent
 * states themselves: a worker does so whenever its window closes (the task
 * it switched to holds its own reference), and goes offline while asleep.
 * _LGPL_SOURCE inlines the read side, as a performance-minded user would.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-qsbr.h>

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

static const char *qsbr_init(void)
{
	return NULL;
}

static void qsbr_thread_enter(struct bthread *t)
{
	urcu_qsbr_register_thread();
	/* The driver only retires and waits: an online idle reader would stall grace periods. */
	if (t->is_driver)
		urcu_qsbr_thread_offline();
}

static void qsbr_thread_exit(struct bthread *t)
{
	if (t->is_driver)
		urcu_qsbr_thread_online();
	urcu_qsbr_unregister_thread();
}

static void qsbr_lazy_enter(struct bthread *t, struct bctx *c)
{
	(void)t; (void)c;
	urcu_qsbr_read_lock();
}

static void qsbr_lazy_leave(struct bthread *t, struct bctx *c)
{
	(void)t; (void)c;
	urcu_qsbr_read_unlock();
	urcu_qsbr_quiescent_state();
}

static void qsbr_idle_enter(struct bthread *t)
{
	(void)t;
	urcu_qsbr_thread_offline();
}

static void qsbr_idle_exit(struct bthread *t)
{
	(void)t;
	urcu_qsbr_thread_online();
}

static void qsbr_retire(struct bthread *driver, struct bctx *c)
{
	(void)driver;
	urcu_qsbr_thread_online();
	urcu_qsbr_call_rcu(head_of(c), free_cb);
	urcu_qsbr_thread_offline();
}

static void qsbr_barrier(struct bthread *driver)
{
	(void)driver;
	urcu_qsbr_barrier();
}

const struct peer_ops peer_urcu_qsbr = {
	.name = "urcu-qsbr",
	.init = qsbr_init,
	.thread_enter = qsbr_thread_enter,
	.thread_exit = qsbr_thread_exit,
	.lazy_enter = qsbr_lazy_enter,
	.lazy_resume = qsbr_lazy_leave,
	.lazy_release = qsbr_lazy_leave,
	.idle_unlazy = true,
	.idle_enter = qsbr_idle_enter,
	.idle_exit = qsbr_idle_exit,
	.retire = qsbr_retire,
	.barrier = qsbr_barrier,
	.ctx_bytes = sizeof(struct rcu_head),
	.worker_bytes = sizeof(struct urcu_qsbr_reader),
};
