/* SPDX-License-Identifier: MIT */
/*
 * A program built with LMM_INLINE against another inline layout than the
 * library's (tests/meson.build passes LMM_INLINE_ABI_TEST and links it
 * against inline-abi-stub.c, a library of that layout under lazymm's
 * soname): run against the real library, the loader must refuse it before
 * main, naming the layout's symbol (inline-abi.sh).
 */
#define LMM_INLINE
#include <lazymm.h>
#include <stdio.h>

int main(void)
{
	puts("inline-abi: started against a library of another inline layout");
	return 0;
}
