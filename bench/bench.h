/* SPDX-License-Identifier: MIT */
/*
 * lmm-bench internals shared by the driver (lmm-bench.c) and the peers that
 * live in their own files because their headers cannot share a translation
 * unit (liburcu's qsbr and memb flavours map the same unprefixed names).
 */
#ifndef LMM_BENCH_H
#define LMM_BENCH_H

#include <lazymm.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * A context as every implementation sees it. lazymm uses the embedded
 * lmm_ctx; atomic-refcount uses count; a peer keeps its own per-context
 * state (rcu_head, ck entries) in the trailing area, sized by its ctx_bytes.
 */
struct bctx {
	struct lmm_ctx lmm; /* first: the lazymm hooks recover the bctx from it */
	atomic_long count;
	_Alignas(16) unsigned char peer[];
};

/* One worker thread of one measurement, whatever the implementation. */
struct bthread {
	/* Peers: the lazy state a lazymm worker keeps in its hot block. */
	struct bctx *active, *current;
	const struct peer_ops *peer;
	void *peer_record; /* the peer's per-thread record (ck_hp / ck_epoch) */
	bool is_driver;    /* the main thread: only retires and waits */
	struct lmm_worker *w;
	unsigned index;
};

/*
 * A peer keeps a context alive across the lazy window with someone else's
 * primitive. The generic switch (peer_switch in lmm-bench.c) mirrors
 * lib/switch.c and calls these where a lazymm scheme's hooks run.
 */
struct peer_ops {
	const char *name;
	/* Once per process. Returns NULL when usable, else why not. */
	const char *(*init)(void);
	void (*thread_enter)(struct bthread *t);
	void (*thread_exit)(struct bthread *t);
	void (*lazy_enter)(struct bthread *t, struct bctx *c);
	void (*lazy_resume)(struct bthread *t, struct bctx *c);
	void (*lazy_release)(struct bthread *t, struct bctx *c);
	/*
	 * True when the window cannot stay open across a sleep (a read-side
	 * section or epoch section would stall every grace period): the idle
	 * path then switches to the init context before sleeping.
	 */
	bool idle_unlazy;
	void (*idle_enter)(struct bthread *t); /* optional */
	void (*idle_exit)(struct bthread *t);  /* optional */
	/* The owner's reference is gone: free c once no window covers it. */
	void (*retire)(struct bthread *driver, struct bctx *c);
	/* Wait for every free already retired (as far as the primitive can). */
	void (*barrier)(struct bthread *driver);
	size_t ctx_bytes;    /* per-context state, sizeof */
	size_t worker_bytes; /* per-thread record, sizeof */
};

/* Implemented by lmm-bench.c for the peers. */
void bench_ctx_free(struct bctx *c);

extern const struct peer_ops peer_urcu_qsbr, peer_urcu_memb, peer_ck_hp, peer_ck_epoch;

#endif /* LMM_BENCH_H */
