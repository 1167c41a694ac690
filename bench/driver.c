/* SPDX-License-Identifier: MIT */
/*
 * lmm-bench: what a lazy hold costs, per scheme, next to a floor and to peers
 * that keep a context alive across the same lazy window with other
 * primitives. See docs/performance.md for what each figure means.
 *
 *   lmm-bench [--quick|--full] [--csv FILE] [--plot DIR] [--impl a,b,...]
 *             [--list] [SCENARIO...]
 *
 * Every figure is the median of repeated runs (warm-ups discarded) with min
 * and max. Repetitions of all implementations are interleaved, so drift on a
 * shared machine hits them alike, and ratios to floor and refcount are
 * printed next to each figure. Times are thread CPU time, so a preempted
 * worker does not count the time another process ran.
 *
 * lazymm is measured as each linkage gives it, side by side in the same
 * run: `hazard` through liblazymm.so (as `pkg-config --libs lazymm` links
 * it), `hazard-static` from liblazymm.a, and `hazard-inline` with
 * LMM_INLINE where the header has it.
 *
 * This unit: the options, the list of implementations and the run loop.
 */
#include <dlfcn.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

struct bench_options opt = { .warmups = 1, .reps = 5, .run_ms = 20, .drop_rounds = 5 };

struct impl impls[MAX_IMPLS];
unsigned nimpls;

static void add_impl(struct impl im)
{
	if (nimpls == MAX_IMPLS) {
		fprintf(stderr, "lmm-bench: more than %d implementations\n", MAX_IMPLS);
		exit(1);
	}
	if (!im.refcount_base)
		im.refcount_base = "refcount";
	impls[nimpls++] = im;
}

/*
 * lazymm, one build of impl_lazymm.c per linkage (bench/meson.build says
 * how each is linked, and why modules): the shared library first, as users
 * link it, then the others beside it. A linkage not built, or a module that
 * does not load, is listed with the reason and skipped.
 */
static const struct {
	const char *linkage, *suffix, *not_built;
	bool built;
} linkages[] = {
	{ "shared", "", "no liblazymm.so in this build (default_library=static), or the linker takes no version script",
#ifdef HAVE_LAZYMM_UNIT_SHARED
	  true
#else
	  false
#endif
	},
	{ "static", "-static", "the linker takes no version script",
#ifdef HAVE_LAZYMM_UNIT_STATIC
	  true
#else
	  false
#endif
	},
	{ "inline", "-inline", "<lazymm.h> has no LMM_INLINE fast path (LMM_INLINE_ABI undefined) or no liblazymm.so",
#ifdef HAVE_LAZYMM_UNIT_INLINE
	  true
#else
	  false
#endif
	},
};
#define NLINKAGES (sizeof(linkages) / sizeof(linkages[0]))

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (!s) {
		perror("lmm-bench");
		exit(1);
	}
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	return s;
}

/* The modules sit next to lmm-bench in the build tree. */
static const struct lazymm_unit *unit_load(const char *linkage, const char **why)
{
	static char dir[PATH_MAX];
	char path[PATH_MAX + 64], err[PATH_MAX + 256];
	if (!dir[0]) {
		ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
		if (n <= 0) {
			*why = "cannot find lmm-bench's directory (/proc/self/exe)";
			return NULL;
		}
		dir[n] = '\0';
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
	}
	snprintf(path, sizeof(path), "%s/lmm-bench-lazymm-%s.so", dir, linkage);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		*why = concat(dlerror(), "");
		return NULL;
	}
	const struct lazymm_unit *(*entry)(void (*)(struct bctx *));
	*(void **)&entry = dlsym(h, LAZYMM_UNIT_ENTRY);
	const struct lazymm_unit *u = entry ? entry(bench_ctx_free) : NULL;
	if (!u || u->abi != LAZYMM_UNIT_ABI) {
		snprintf(err, sizeof(err), "%s: not a lazymm unit of this lmm-bench (rebuild)", path);
		*why = concat(err, "");
		return NULL;
	}
	return u; /* loaded for the whole run */
}

/* Per scheme, its linkages side by side: hazard, hazard-static, hazard-inline. */
static void discover_lazymm(void)
{
	const struct lazymm_unit *u[NLINKAGES], *any = NULL;
	const char *why[NLINKAGES];
	for (size_t l = 0; l < NLINKAGES; l++) {
		u[l] = NULL;
		why[l] = linkages[l].not_built;
		if (linkages[l].built)
			u[l] = unit_load(linkages[l].linkage, &why[l]);
		if (!any)
			any = u[l];
	}
	if (!any) {
		/* The schemes' names come from a unit: without one, one line each. */
		for (size_t l = 0; l < NLINKAGES; l++)
			add_impl((struct impl){ .name = concat("lazymm", linkages[l].suffix[0] ? linkages[l].suffix : "-shared"),
						.kind = K_LMM, .linkage = linkages[l].linkage, .missing = why[l] });
		return;
	}
	for (int s = any->scheme_first; s <= any->scheme_last; s++) {
		for (size_t l = 0; l < NLINKAGES; l++) {
			struct impl im = { .name = concat(any->scheme_name(s), linkages[l].suffix), .kind = K_LMM,
					   .scheme = s, .linkage = linkages[l].linkage,
					   .refcount_base = concat("refcount", linkages[l].suffix), .missing = why[l] };
			if (u[l]) {
				im.ops = u[l]->ops;
				im.missing = u[l]->scheme_available(s) ? NULL : "not built into this liblazymm";
			}
			add_impl(im);
		}
	}
}

static void add_peer(const char *name, const struct peer_ops *p, const char *missing)
{
	add_impl((struct impl){ .name = name, .kind = K_PEER, .ops = &peer_generic_ops, .peer = p,
				.missing = missing });
}

static void discover_impls(void)
{
	discover_lazymm();
	add_impl((struct impl){ .name = "floor", .kind = K_FLOOR, .ops = &floor_ops });
	add_peer("atomic-refcount", &peer_atomic_refcount, NULL);
#ifdef HAVE_URCU_QSBR
	add_peer("urcu-qsbr", &peer_urcu_qsbr, NULL);
#else
	add_peer("urcu-qsbr", NULL, "built without liburcu-qsbr (liburcu-dev)");
#endif
#ifdef HAVE_URCU_MEMB
	add_peer("urcu-memb", &peer_urcu_memb, NULL);
#else
	add_peer("urcu-memb", NULL, "built without liburcu-memb (liburcu-dev)");
#endif
#ifdef HAVE_CK
	add_peer("ck-hp", &peer_ck_hp, NULL);
	add_peer("ck-epoch", &peer_ck_epoch, NULL);
#else
	add_peer("ck-hp", NULL, "built without Concurrency Kit (libck-dev)");
	add_peer("ck-epoch", NULL, "built without Concurrency Kit (libck-dev)");
#endif
	for (unsigned i = 0; i < nimpls; i++) {
		impls[i].selected = true;
		if (!impls[i].missing && impls[i].peer && impls[i].peer->init)
			impls[i].missing = impls[i].peer->init();
	}
}

/* One note per reason: "note: a, b skipped: why". */
static void print_skipped(void)
{
	bool done[MAX_IMPLS] = { false };
	for (unsigned m = 0; m < nimpls; m++) {
		if (done[m] || !impls[m].selected || !impls[m].missing)
			continue;
		printf("note: %s", impls[m].name);
		for (unsigned k = m + 1; k < nimpls; k++) {
			if (!done[k] && impls[k].selected && impls[k].missing &&
			    strcmp(impls[k].missing, impls[m].missing) == 0) {
				printf(", %s", impls[k].name);
				done[k] = true;
			}
		}
		printf(" skipped: %s\n", impls[m].missing);
	}
}

static unsigned progress_done, progress_total;

void progress(const char *sc, const char *impl, unsigned workers)
{
	progress_done++;
	unsigned pct = progress_total ? 100 * progress_done / progress_total : 0;
	if (isatty(STDERR_FILENO)) {
		fprintf(stderr, "\r[%3u%%] %-15s %-16s %3u workers   ", pct, sc, impl, workers);
		if (progress_done == progress_total)
			fprintf(stderr, "\n");
	} else {
		/* A log, not a terminal: one line per finished figure group is enough. */
		static const char *last_sc;
		static unsigned last_workers;
		if (sc != last_sc || workers != last_workers)
			fprintf(stderr, "[%3u%%] %s, %u workers\n", pct, sc, workers);
		last_sc = sc;
		last_workers = workers;
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lmm-bench [--quick|--full] [--csv FILE] [--plot DIR] [--impl NAME,...] [--list] [SCENARIO...]\n"
		"  --quick      short runs (the default; the whole run takes under a minute on 2 cores)\n"
		"  --full       longer runs, more repetitions, every worker count up to nproc\n"
		"  --csv FILE   write rows scenario,impl,workers,metric,median,min,max,unit\n"
		"  --plot DIR   write one SVG per scenario (needs gnuplot)\n"
		"  --impl LIST  only these implementations (comma-separated): hazard is lazymm's hazard\n"
		"               through liblazymm.so, hazard-static from liblazymm.a, hazard-inline with\n"
		"               LMM_INLINE; floor and the peers as --list names them\n"
		"  --list       print the scenarios and implementations, then exit\n");
}

static void list(void)
{
	printf("scenarios:\n");
	for (int sc = 0; sc < SC_NR; sc++)
		printf("  %-15s %s\n", scenario_names[sc], scenario_help[sc]);
	printf("implementations:\n");
	for (unsigned m = 0; m < nimpls; m++) {
		const char *l = impls[m].linkage, *what = impls[m].kind == K_FLOOR ? "floor" : "peer";
		if (impls[m].kind == K_LMM)
			what = strcmp(l, "shared") == 0   ? "lazymm scheme, through liblazymm.so"
			       : strcmp(l, "static") == 0 ? "lazymm scheme, from liblazymm.a"
							  : "lazymm scheme, LMM_INLINE";
		printf("  %-16s %s%s%s%s\n", impls[m].name, what,
		       impls[m].missing ? " (skipped: " : "", impls[m].missing ? impls[m].missing : "",
		       impls[m].missing ? ")" : "");
	}
}

static void select_impls(const char *spec)
{
	for (unsigned m = 0; m < nimpls; m++)
		impls[m].selected = false;
	char *copy = strdup(spec), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		bool found = false;
		for (unsigned m = 0; m < nimpls; m++) {
			if (strcmp(impls[m].name, tok) == 0) {
				impls[m].selected = true;
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr, "lmm-bench: unknown implementation '%s' (see --list)\n", tok);
			exit(2);
		}
	}
	free(copy);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "full", no_argument, NULL, 'f' },
		{ "csv", required_argument, NULL, 'c' },
		{ "plot", required_argument, NULL, 'p' },
		{ "impl", required_argument, NULL, 'i' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	discover_cpus();
	discover_impls();
	const char *impl_spec = NULL;
	bool do_list = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q': opt.full = false; break;
		case 'f': opt.full = true; break;
		case 'c': opt.csv = optarg; break;
		case 'p': opt.plot = optarg; break;
		case 'i': impl_spec = optarg; break;
		case 'l': do_list = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (do_list) {
		list();
		return 0;
	}
	if (impl_spec)
		select_impls(impl_spec);
	if (opt.full) {
		opt.warmups = 2;
		opt.reps = 11;
		opt.run_ms = 200;
		opt.drop_rounds = 50;
	}
	bool any = false;
	for (int i = optind; i < argc; i++) {
		bool found = false;
		for (int sc = 0; sc < SC_NR; sc++) {
			if (strcmp(argv[i], scenario_names[sc]) == 0) {
				scenario_selected[sc] = found = any = true;
			}
		}
		if (!found) {
			fprintf(stderr, "lmm-bench: unknown scenario '%s' (see --list)\n", argv[i]);
			return 2;
		}
	}
	if (!any)
		for (int sc = 0; sc < SC_NR; sc++)
			scenario_selected[sc] = true;

	printf("lmm-bench: %s pass, %u cpus, %u warm-up + %u measured runs per figure, %u ms per timed run\n",
	       opt.full ? "full" : "quick", ncpus, opt.warmups, opt.reps, opt.run_ms);
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
	printf("workers pinned round-robin to the %u cpus of this process's affinity mask\n", ncpus);
#else
	printf("workers not pinned: no pthread_setaffinity_np on this platform\n");
#endif
	print_skipped();

	unsigned selected_impls = 0;
	for (unsigned m = 0; m < nimpls; m++)
		selected_impls += impl_runs(&impls[m]);
	for (int sc = 0; sc < SC_NR; sc++) {
		if (!scenario_selected[sc])
			continue;
		unsigned counts[64];
		unsigned runs = selected_impls;
		for (unsigned m = 0; sc == SC_FINAL_DROP && m < nimpls; m++)
			runs -= impl_runs(&impls[m]) && impls[m].kind == K_FLOOR; /* no lifetime to end */
		progress_total += worker_counts(sc, counts) * runs;
	}

	for (int sc = 0; sc < SC_NR; sc++) {
		if (!scenario_selected[sc])
			continue;
		if (sc == SC_FINAL_DROP)
			scenario_final_drop();
		else if (sc == SC_MEMORY)
			scenario_memory();
		else
			scenario_timed(sc);
		print_table(sc);
	}
	if (opt.csv)
		write_csv(opt.csv);
	if (opt.plot)
		write_plots(opt.plot);
	return 0;
}
