/* SPDX-License-Identifier: MIT */
/*
 * The hazard scheme's state in the core's objects (lib/internal.h): two
 * words in the worker's hot block, typed in lazymm.h's inline layout. hazard.c has the protocol.
 */
#ifndef LMM_SCHEME_HAZARD_STATE_H
#define LMM_SCHEME_HAZARD_STATE_H


/*
 * The two hot words are lazymm.h's struct lmm_inline_hazard (lazy: the
 * lazily held context, | HAZARD_OWNED when counted; drop: a count
 * reference to drop, or DROP_CLOSED offline): LMM_INLINE callers share them.
 */

/* Its members of the core's per-scheme unions (lib/internal.h). */
#define LMM_HAZARD_WORKER_HOT struct lmm_inline_hazard hazard;
#define LMM_HAZARD_WORKER_COLD
#define LMM_HAZARD_CTX
#define LMM_HAZARD_DOMAIN

#endif
