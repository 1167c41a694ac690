/* SPDX-License-Identifier: MIT */
/* The shootdown scheme's state in the core's objects (lib/internal.h); shootdown.c uses it. */
#ifndef LMM_SCHEME_SHOOTDOWN_STATE_H
#define LMM_SCHEME_SHOOTDOWN_STATE_H

#include <stdatomic.h>
#include <stdbool.h>


/* Per worker, cold: the signal bookkeeping of droppers (shootdown.c, (c) and (d)). */
struct shootdown_cold {
	atomic_ulong req;      /* requests for a signal: tickets, taken by droppers */
	atomic_ulong sent;     /* the highest ticket a signal was (or is being) sent after */
	atomic_bool shooting;  /* owner only: this unlazy is the scheme's own (no (b) count) */
	atomic_ulong seen;     /* the request ticket the last completed handler run had seen */
	atomic_ulong sent_at;  /* when the last signal was sent, in ms (wraps; only differences count) */
	atomic_ulong patience; /* (d): ms to wait for an answer to it before sending another */
};

/* Per context, once its count reached 0 (its list link is the reclaim engine's, reclaim_next). */
struct shootdown_ctx {
	bool signalled; /* a round signalled its holders yet (the round's own) */
};

/* Its members of the core's per-scheme unions (lib/internal.h). */
#define LMM_SHOOTDOWN_WORKER_HOT
#define LMM_SHOOTDOWN_WORKER_COLD struct shootdown_cold shootdown;
#define LMM_SHOOTDOWN_CTX struct shootdown_ctx shootdown;
#define LMM_SHOOTDOWN_DOMAIN

#endif
