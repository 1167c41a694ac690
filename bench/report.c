/* SPDX-License-Identifier: MIT */
/*
 * The results: one row per scenario, implementation, worker count and
 * metric; printed as tables with the ratios to floor and to refcount
 * (and, for cross-switch, to one call of the floor),
 * written as CSV and as gnuplot plots.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

struct result {
	int scenario;
	const struct impl *im;
	unsigned workers;
	const char *metric, *unit;
	double median, min, max;
};

static struct result *results;
static size_t nresults, cap_results;

void add_result(int sc, const struct impl *im, unsigned workers, const char *metric, const char *unit,
		double median, double min, double max)
{
	if (nresults == cap_results) {
		cap_results = cap_results ? 2 * cap_results : 256;
		results = realloc(results, cap_results * sizeof(*results));
		if (!results) {
			perror("lmm-bench");
			exit(1);
		}
	}
	results[nresults++] = (struct result){ sc, im, workers, metric, unit, median, min, max };
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void summarise(double *v, unsigned n, double *median, double *min, double *max)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*min = v[0];
	*max = v[n - 1];
	*median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const struct result *find_result(int sc, const char *impl, unsigned workers, const char *metric)
{
	for (size_t i = 0; i < nresults; i++)
		if (results[i].scenario == sc && results[i].workers == workers &&
		    strcmp(results[i].im->name, impl) == 0 && strcmp(results[i].metric, metric) == 0)
			return &results[i];
	return NULL;
}

static void ratio(char *buf, size_t len, const struct result *x, const char *base)
{
	const struct result *b = find_result(x->scenario, base, x->workers, x->metric);
	if (!b || b->median == 0 || strcmp(x->im->name, base) == 0)
		snprintf(buf, len, "%s", b && strcmp(x->im->name, base) == 0 ? "1" : "-");
	else
		snprintf(buf, len, "%.2f", x->median / b->median);
}

static void fmt_num(char *buf, size_t len, double v)
{
	if (v != 0 && (v >= 1e6 || v < 0.01))
		snprintf(buf, len, "%.3g", v);
	else
		snprintf(buf, len, "%.2f", v);
}

void print_table(int sc)
{
	printf("\n== %s: %s\n", scenario_names[sc], scenario_help[sc]);
	/*
	 * cross-switch: the floor makes two calls per context switch (the
	 * install and going lazy); the install path's goal is against one.
	 */
	bool one_call = sc == SC_CROSS;
	if (one_call)
		printf("x 1call: ns per context switch over the floor's ns per call (half its figure)\n");
	printf("%-16s %7s  %-12s %12s %12s %12s  %-9s %8s %8s%s\n", "impl", "workers", "metric", "median",
	       "min", "max", "unit", "x floor", "x refcnt", one_call ? "   x 1call" : "");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *x = &results[i];
		if (x->scenario != sc)
			continue;
		char med[32], mn[32], mx[32], rf[32], rr[32];
		fmt_num(med, sizeof(med), x->median);
		fmt_num(mn, sizeof(mn), x->min);
		fmt_num(mx, sizeof(mx), x->max);
		ratio(rf, sizeof(rf), x, "floor");
		ratio(rr, sizeof(rr), x, x->im->refcount_base);
		char r1[32] = "";
		if (one_call) {
			const struct result *b = find_result(sc, "floor", x->workers, x->metric);
			if (b && b->median != 0)
				snprintf(r1, sizeof(r1), "   %8.2f", x->median / (b->median / 2));
			else
				snprintf(r1, sizeof(r1), "   %8s", "-");
		}
		printf("%-16s %7u  %-12s %12s %12s %12s  %-9s %8s %8s%s\n", x->im->name, x->workers, x->metric,
		       med, mn, mx, x->unit, rf, rr, r1);
	}
	fflush(stdout);
}

void write_csv(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "lmm-bench: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	fprintf(f, "scenario,impl,workers,metric,median,min,max,unit\n");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *x = &results[i];
		fprintf(f, "%s,%s,%u,%s,%.6g,%.6g,%.6g,%s\n", scenario_names[x->scenario], x->im->name,
			x->workers, x->metric, x->median, x->min, x->max, x->unit);
	}
	fclose(f);
	fprintf(stderr, "lmm-bench: wrote %s\n", path);
}

/* The metric a scenario's plot shows. */
static const char *const plot_metric[SC_NR] = {
	[SC_ROUNDTRIP] = "roundtrip",
	[SC_CROSS] = "switch",
	[SC_FINAL_DROP] = "latency",
	[SC_MEMORY] = "ctx_bytes",
	[SC_PINGPONG] = "switches",
	[SC_IDLE_CYCLE] = "cycle",
};

/* Log axes: an implementation with a zero figure (floor's memory) has no line. */
static bool plottable(int sc, const struct impl *im)
{
	bool any = false;
	for (size_t i = 0; i < nresults; i++) {
		const struct result *x = &results[i];
		if (x->scenario == sc && x->im == im && strcmp(x->metric, plot_metric[sc]) == 0) {
			if (x->median <= 0)
				return false;
			any = true;
		}
	}
	return any;
}

void write_plots(const char *dir)
{
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		fprintf(stderr, "lmm-bench: note: gnuplot not installed, no plots written\n");
		return;
	}
	if (mkdir(dir, 0777) && errno != EEXIST) {
		fprintf(stderr, "lmm-bench: %s: %s\n", dir, strerror(errno));
		return;
	}
	for (int sc = 0; sc < SC_NR; sc++) {
		if (!scenario_selected[sc])
			continue;
		const char *unit = NULL;
		for (size_t i = 0; i < nresults; i++)
			if (results[i].scenario == sc && strcmp(results[i].metric, plot_metric[sc]) == 0)
				unit = results[i].unit;
		if (!unit)
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s.svg", dir, scenario_names[sc]);
		FILE *g = popen("gnuplot", "w");
		if (!g)
			continue;
		fprintf(g, "set terminal svg size 800,500 dynamic background rgb 'white'\n");
		fprintf(g, "set output '%s'\n", path);
		fprintf(g, "set title '%s: %s (median, bars min..max)'\n", scenario_names[sc], plot_metric[sc]);
		fprintf(g, "set xlabel 'workers'\nset ylabel '%s'\nset key outside right\nset grid\n", unit);
		if (sc == SC_MEMORY) {
			/* One figure per implementation: bars, not lines over workers. */
			fprintf(g, "set xlabel ''\nset style fill solid 0.5\nset boxwidth 0.6\nset xtics rotate by -30\n");
			fprintf(g, "plot '-' using 0:2:xtic(1) with boxes notitle\n");
			for (size_t i = 0; i < nresults; i++)
				if (results[i].scenario == sc && strcmp(results[i].metric, plot_metric[sc]) == 0)
					fprintf(g, "%s %g\n", results[i].im->name, results[i].median);
			fprintf(g, "e\n");
			if (pclose(g) == 0)
				fprintf(stderr, "lmm-bench: wrote %s\n", path);
			continue;
		}
		fprintf(g, "set logscale x 2\nset logscale y\n");
		fprintf(g, "plot ");
		bool first = true;
		for (unsigned m = 0; m < nimpls; m++) {
			if (!plottable(sc, &impls[m]))
				continue;
			fprintf(g, "%s'-' using 1:2:3:4 with yerrorlines title '%s'", first ? "" : ", ",
				impls[m].name);
			first = false;
		}
		fprintf(g, "\n");
		for (unsigned m = 0; m < nimpls; m++) {
			if (!plottable(sc, &impls[m]))
				continue;
			for (size_t i = 0; i < nresults; i++) {
				const struct result *x = &results[i];
				if (x->scenario == sc && x->im == &impls[m] && strcmp(x->metric, plot_metric[sc]) == 0)
					fprintf(g, "%u %g %g %g\n", x->workers, x->median, x->min, x->max);
			}
			fprintf(g, "e\n");
		}
		if (first)
			fprintf(stderr, "lmm-bench: nothing to plot for %s\n", scenario_names[sc]);
		if (pclose(g) == 0 && !first)
			fprintf(stderr, "lmm-bench: wrote %s\n", path);
	}
}
