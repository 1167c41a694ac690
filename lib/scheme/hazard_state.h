/* SPDX-License-Identifier: MIT */
/*
 * The hazard scheme's state in the core's objects (lib/internal.h): two
 * words in the worker's hot block. hazard.c has the protocol.
 */
#ifndef LMM_SCHEME_HAZARD_STATE_H
#define LMM_SCHEME_HAZARD_STATE_H

#include <stdatomic.h>
#include <stdint.h>

struct hazard_hot {
	/*
	 * The lazily held context: ctx (a hazard, uncounted), or ctx |
	 * HAZARD_OWNED (the worker holds a count reference of its own: it went
	 * lazy on a context whose users were already 0). Written only by the
	 * owner.
	 */
	_Atomic(uintptr_t) lazy;
	/*
	 * A count reference the worker must drop when its lazy period ends,
	 * or DROP_CLOSED while the worker is offline. Changed only by atomic
	 * read-modify-writes (owner and converters).
	 */
	_Atomic(uintptr_t) drop;
};

/* Its members of the core's per-scheme unions (lib/internal.h). */
#define LMM_HAZARD_WORKER_HOT struct hazard_hot hazard;
#define LMM_HAZARD_WORKER_COLD
#define LMM_HAZARD_CTX
#define LMM_HAZARD_DOMAIN

#endif
