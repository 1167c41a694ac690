/* SPDX-License-Identifier: MIT */
/* The ABI's moving parts: the run-time version, lmm_stats for any caller's struct size. */

#include <string.h>

#include "internal.h"

unsigned lmm_version(void)
{
	return LAZYMM_VERSION;
}

int lmm_stats_get(struct lmm_domain *d, struct lmm_stats *out, size_t size)
{
	struct lmm_stats all;

	if (!out || size == 0 || size % sizeof(uint64_t))
		return -EINVAL;
	int ret = lmm__stats(d, &all);
	if (ret)
		return ret;
	/* An older caller's struct ends early; a newer one's tail is unknown here: zero. */
	size_t known = size < sizeof(all) ? size : sizeof(all);
	memcpy(out, &all, known);
	memset((char *)out + known, 0, size - known);
	return 0;
}
