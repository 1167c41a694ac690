/* SPDX-License-Identifier: MIT */
/*
 * USDT probes, provider "lazymm", on the slow paths only (never on
 * lmm_switch's lazy hit or going lazy). Compiled in when meson found
 * <sys/sdt.h> (systemtap-sdt-dev): each probe is then one nop plus an ELF
 * note (.note.stapsdt) telling a tracer where its arguments are; not
 * attached, it costs the nop. Without the header the probes are nothing.
 * The list (name, arguments) is in lazymm(7) and docs/probes.md; the probes
 * test checks the built library has exactly those.
 */
#ifndef LMM_PROBES_H
#define LMM_PROBES_H

#ifdef LMM_HAVE_SDT
#define SDT_USE_VARIADIC /* STAP_PROBEV */
#include <sys/sdt.h>
#define LMM_PROBE(...) STAP_PROBEV(lazymm, __VA_ARGS__)
#else
#define LMM_PROBE(...) ((void)0)
#endif

#endif /* LMM_PROBES_H */
