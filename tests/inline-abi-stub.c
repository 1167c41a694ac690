/* SPDX-License-Identifier: MIT */
/*
 * Stands for a lazymm of another inline layout at link time (same soname,
 * tests/meson.build): it has that layout's symbol and nothing else.
 */
#define LMM_INLINE_LAYOUT
#include <lazymm.h>

LMM_INLINE_EXPORT const unsigned char LMM_INLINE_ABI_SYMBOL = LMM_INLINE_ABI;
