/* SPDX-License-Identifier: MIT */
/*
 * The refcount scheme's state in the core's objects (lib/internal.h): none.
 * Every lazy hold is a count reference on the context itself.
 */
#ifndef LMM_SCHEME_REFCOUNT_STATE_H
#define LMM_SCHEME_REFCOUNT_STATE_H

/* Its members of the core's per-scheme unions (lib/internal.h): none. */
#define LMM_REFCOUNT_WORKER_HOT
#define LMM_REFCOUNT_WORKER_COLD
#define LMM_REFCOUNT_CTX
#define LMM_REFCOUNT_DOMAIN

#endif
