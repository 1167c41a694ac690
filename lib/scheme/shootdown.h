/* SPDX-License-Identifier: MIT */
/*
 * The shootdown scheme's fast-path pieces (switch.c says what every
 * scheme's NAME.h declares): none. A lazy hold is uncounted and writes
 * nothing shared; the price is paid when a count reaches 0 (shootdown.c).
 */
#ifndef LMM_SCHEME_SHOOTDOWN_H
#define LMM_SCHEME_SHOOTDOWN_H

#include "../internal.h"

/* A fast copy of lmm_switch's body, with no hooks at all in it. */
#define LMM_SHOOTDOWN_IF_FAST_COPY(...) __VA_ARGS__
#define LMM_SHOOTDOWN_LAZY_HOOKS 0
#define LMM_SHOOTDOWN_HIT_ON_INIT 0
/* lazymm.h's LMM_INLINE path runs its (empty) hooks too. */
#define LMM_SHOOTDOWN_INLINE 1

static inline void shootdown_lazy_enter(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	(void)w;
	(void)ctx;
	(void)careful;
}

static inline void shootdown_lazy_resume(struct lmm_worker *w, struct lmm_ctx *ctx, bool careful)
{
	(void)w;
	(void)ctx;
	(void)careful;
}

#endif
