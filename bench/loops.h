/* SPDX-License-Identifier: MIT */
/*
 * The timed loops of lazy-roundtrip, cross-switch, pingpong and idle-cycle, compiled
 * into each implementation unit so that the unit's switch is inline in
 * them (or a direct call, as the unit chooses): the loop adds no call of
 * its own to what is measured. The unit defines, before including this,
 *
 *   static inline void loop_switch(struct bthread *t, struct bctx *next);
 *   static inline void loop_idle_enter(struct run *r, struct bthread *t);
 *   static inline void loop_idle_exit(struct run *r, struct bthread *t);
 *
 * and puts LOOPS_OPS in its struct impl_ops.
 */
#ifndef LMM_BENCH_LOOPS_H
#define LMM_BENCH_LOOPS_H

#include "bench.h"
#include "greenthreads.h"

#define BATCH 256

static inline bool stopped(struct timed *tm)
{
	/* Relaxed: a read-mostly flag; a few more iterations after it flips are harmless. */
	return atomic_load_explicit(&tm->stop, memory_order_relaxed);
}

static uint64_t loop_roundtrip(struct timed *tm, struct bthread *t)
{
	uint64_t n = 0;
	struct bctx *a = tm->a;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			loop_switch(t, a);
			loop_switch(t, NULL);
		}
		n += BATCH;
	}
	return n;
}

static uint64_t loop_cross(struct timed *tm, struct bthread *t)
{
	uint64_t n = 0;
	struct bctx *a = tm->a, *b = tm->b;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			loop_switch(t, a);
			loop_switch(t, NULL);
			loop_switch(t, b);
			loop_switch(t, NULL);
		}
		n += 2 * BATCH; /* A -> lazy -> B and B -> lazy -> A: two context switches */
	}
	return n;
}

/*
 * Every hand-off goes through the worker's idle path: the blocked task's
 * worker goes lazy (a context-less idle task), brackets its idle poll, and
 * resumes the partner, a task of the same context: the lazy hit.
 */
static uint64_t loop_pingpong(struct timed *tm, struct bthread *t)
{
	struct gsched s;
	struct gtask ta, tb;
	gsched_start(&s, &ta, &tb);
	uint64_t n = 0;
	struct bctx *a = tm->a;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			struct gtask *next = s.runnable;
			s.runnable = NULL;
			loop_switch(t, a);
			s.running = next;
			gsched_to_task(&s, next);
			loop_switch(t, NULL);
			loop_idle_enter(tm->r, t);
			loop_idle_exit(tm->r, t);
		}
		n += BATCH;
	}
	gsched_end(&s);
	return n;
}

/*
 * A worker with nothing else to run: it runs a task of A, goes lazy and
 * brackets an idle poll, as pingpong's hand-off does without the stack
 * switch: two switches and the two idle calls per cycle.
 */
static uint64_t loop_idle_cycle(struct timed *tm, struct bthread *t)
{
	uint64_t n = 0;
	struct bctx *a = tm->a;
	while (!stopped(tm)) {
		for (int i = 0; i < BATCH; i++) {
			loop_switch(t, a);
			loop_switch(t, NULL);
			loop_idle_enter(tm->r, t);
			loop_idle_exit(tm->r, t);
		}
		n += BATCH;
	}
	return n;
}

#define LOOPS_OPS .loop = { [LOOP_ROUNDTRIP] = loop_roundtrip, [LOOP_CROSS] = loop_cross, \
			    [LOOP_PINGPONG] = loop_pingpong, [LOOP_IDLE_CYCLE] = loop_idle_cycle }

#endif /* LMM_BENCH_LOOPS_H */
