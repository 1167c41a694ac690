/* SPDX-License-Identifier: MIT */
/* The library's allocator and its fault-injection hook (see alloc.h). */
#include <stdatomic.h>
#include <stdlib.h>

#include "alloc.h"

/*
 * Countdown to the injected failure: 0 disarmed, otherwise the number of
 * allocations left until (and including) the one that fails. Relaxed
 * throughout: a test arms it before the calls it injects into and reads it
 * after they returned, on the same thread or after a join.
 */
static atomic_ulong fail_countdown;
static atomic_ulong alloc_calls;

static int inject(void)
{
	atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
	unsigned long left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
	while (left) {
		/* Relaxed: see fail_countdown; the CAS only keeps concurrent allocators from both failing. */
		if (atomic_compare_exchange_weak_explicit(&fail_countdown, &left, left - 1,
							  memory_order_relaxed, memory_order_relaxed))
			return left == 1;
	}
	return 0;
}

void *lmm__malloc(size_t size)
{
	return inject() ? NULL : malloc(size);
}

void *lmm__calloc(size_t n, size_t size)
{
	return inject() ? NULL : calloc(n, size);
}

void *lmm__aligned_alloc(size_t align, size_t size)
{
	void *p;
	if (inject() || posix_memalign(&p, align, size))
		return NULL;
	return p;
}

unsigned long lmm__alloc_fail_nth(unsigned long nth)
{
	/* Relaxed: see fail_countdown. */
	atomic_store_explicit(&fail_countdown, nth, memory_order_relaxed);
	return atomic_exchange_explicit(&alloc_calls, 0, memory_order_relaxed);
}

int lmm__alloc_fail_pending(void)
{
	/* Relaxed: see fail_countdown. */
	return atomic_load_explicit(&fail_countdown, memory_order_relaxed) != 0;
}
