/* SPDX-License-Identifier: MIT */
/*
 * floor: the same loops with two thread-local stores through a call per
 * switch, and one through a call per idle_enter and idle_exit, and nothing
 * else: what any implementation costs at least.
 */
#include "bench.h"

/*
 * volatile: the stores must happen. A static variable nothing reads is
 * dead to the compiler, and an asm memory clobber does not keep stores to
 * an object whose address never escapes: without volatile, gcc -O2 and
 * -O3 compile floor_switch to a bare ret, and the floor measures two empty
 * calls. A volatile store is the one mov a relaxed atomic store is.
 */
static __thread struct bctx *volatile floor_current;
static __thread volatile uintptr_t floor_slot;

BENCH_CALL static void floor_switch(struct bctx *next)
{
	floor_current = next;
	floor_slot = (uintptr_t)next;
	/* Keeps the call: the compiler may not fold loop iterations. */
	__asm__ volatile("" ::: "memory");
}

static inline void loop_switch(struct bthread *t, struct bctx *next)
{
	(void)t;
	floor_switch(next);
}

static __thread volatile bool floor_idle; /* volatile: as floor_current */

BENCH_CALL static void floor_idle_set(bool idle)
{
	floor_idle = idle;
	__asm__ volatile("" ::: "memory");
}

static inline void loop_idle_enter(struct run *r, struct bthread *t)
{
	(void)r;
	(void)t;
	floor_idle_set(true);
}

static inline void loop_idle_exit(struct run *r, struct bthread *t)
{
	(void)r;
	(void)t;
	floor_idle_set(false);
}

#include "loops.h"

static void floor_run(struct run *r, unsigned max_workers)
{
	(void)r;
	(void)max_workers;
}

static void floor_nothing(struct run *r)
{
	(void)r;
}

static void floor_put(struct run *r, struct bctx *c)
{
	(void)r;
	bench_ctx_free(c);
}

static void floor_thread(struct run *r, struct bthread *t)
{
	(void)r;
	(void)t;
}

const struct impl_ops floor_ops = {
	.open = floor_run,
	.close = floor_nothing,
	.ctx_put = floor_put,
	.barrier = floor_nothing,
	.thread_enter = floor_thread,
	.thread_leave = floor_thread,
	.sw = loop_switch,
	.idle_enter = loop_idle_enter,
	.idle_exit = loop_idle_exit,
	LOOPS_OPS,
};
