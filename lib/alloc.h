/* SPDX-License-Identifier: MIT */
/*
 * The library's one allocator. Every allocation goes through here so that
 * the fault tests can fail any one of them (tests/faults.c) and check that
 * the caller backs out with -ENOMEM and leaks nothing. Memory comes from
 * malloc: release it with free().
 */
#ifndef LMM_ALLOC_H
#define LMM_ALLOC_H

#include <stddef.h>

#define LMM_ALLOC_HIDDEN __attribute__((visibility("hidden")))

LMM_ALLOC_HIDDEN void *lmm__malloc(size_t size);
LMM_ALLOC_HIDDEN void *lmm__calloc(size_t n, size_t size);
/* posix_memalign's contract, but returns NULL instead of an error code. */
LMM_ALLOC_HIDDEN void *lmm__aligned_alloc(size_t align, size_t size);

/*
 * Test-only (reached through the static library): make the nth allocation
 * from now fail (1 = the next one), once; 0 disarms. Returns the number of
 * allocations made since the previous call.
 */
LMM_ALLOC_HIDDEN unsigned long lmm__alloc_fail_nth(unsigned long nth);
/* Whether the armed failure is still waiting (it was not reached). */
LMM_ALLOC_HIDDEN int lmm__alloc_fail_pending(void);

#endif
