/* SPDX-License-Identifier: MIT */
/*
 * The platform seam: everything lazymm needs from the operating system that
 * is not plain C11 + pthreads. One implementation per system (linux.c); a
 * build on a system without one fails in meson.build with a clear message.
 *
 * Build-time fallbacks, each forced with a meson option so that they are
 * tested on Linux too:
 *   LMM_NO_MEMBARRIER  no membarrier(2): lmm_plat_membarrier_* use fences
 *   LMM_NO_RTSIG       no realtime signals: the default signal is SIGUSR2
 */
#ifndef LMM_PLATFORM_H
#define LMM_PLATFORM_H

#include <stdbool.h>

/*
 * Asymmetric fences. The fast side of a store->load handshake calls
 * lmm_plat_light_fence() (a compiler barrier where membarrier exists, a full
 * fence otherwise); the rare side calls lmm_plat_heavy_fence(), which makes
 * every thread of the process execute a full barrier (membarrier
 * PRIVATE_EXPEDITED), or is a plain full fence in the fallback.
 */
bool lmm_plat_membarrier_register(void);
bool lmm_plat_have_membarrier(void);
void lmm_plat_heavy_fence(void);

/* The default signal number for domains that need one. */
int lmm_plat_default_signo(void);

/* Monotonic clock in nanoseconds. */
unsigned long long lmm_plat_now_ns(void);

/* Sleep for about ns nanoseconds. */
void lmm_plat_sleep_ns(unsigned long long ns);

#endif
