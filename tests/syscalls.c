/* SPDX-License-Identifier: MIT */
/*
 * One life of a domain, for strace (tests/syscalls.sh): create, two workers
 * online, switches, a final put while both are lazy (the second asleep in
 * the idle bracket), lmm_membarrier, lmm_unlazy, lmm_barrier, offline,
 * destroy. Before destroying it prints the threads the library created
 * ("thread TID NAME", from /proc/self/task), so that their system calls
 * count as the library's.
 * Usage: lmm-syscalls SCHEME [defer|nothreads]
 */
#include <dirent.h>
#include <lazymm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)w, (void)prev, (void)next, (void)flags;
}
static void teardown(struct lmm_ctx *c) { (void)c; }
static void free_ctx(struct lmm_ctx *c) { free(c); }
static const struct lmm_ops ops = { switch_ctx, teardown, free_ctx };

static struct lmm_domain *d;
static struct lmm_ctx *a;
static atomic_int phase;
static pid_t probe_tids[2];

static void *second(void *arg)
{
	struct lmm_worker *w;
	(void)arg;
	probe_tids[1] = (pid_t)syscall(SYS_gettid);
	if (lmm_worker_online(d, NULL, &w))
		exit(1);
	lmm_switch(w, a);
	lmm_switch(w, NULL);
	atomic_store(&phase, 1);
	while (atomic_load(&phase) == 1) {
		struct timespec ts = { 0, 1000000 };
		lmm_idle_enter(w);
		nanosleep(&ts, NULL);
		lmm_idle_exit(w);
		lmm_switch(w, NULL);
	}
	lmm_worker_offline(w);
	return NULL;
}

/* Every thread of the process but the probe's two: the library's. */
static void print_threads(void)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		pid_t tid = atoi(e->d_name);
		if (tid <= 0 || tid == probe_tids[0] || tid == probe_tids[1])
			continue;
		char path[64], name[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
		FILE *f = fopen(path, "r");
		if (f && fgets(name, sizeof(name), f))
			name[strcspn(name, "\n")] = 0;
		if (f)
			fclose(f);
		printf("thread %d %s\n", tid, name);
	}
	if (dir)
		closedir(dir);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct lmm_config cfg = { .ops = &ops };
	if (argc < 2 || lmm_scheme_parse(argv[1], &cfg.scheme))
		return 2;
	if (argc > 2)
		cfg.flags = !strcmp(argv[2], "defer") ? LMM_F_DEFER_FREE : LMM_F_NO_THREADS;
	probe_tids[0] = (pid_t)syscall(SYS_gettid);
	struct lmm_worker *w;
	if (lmm_domain_create(&cfg, &d) || lmm_worker_online(d, NULL, &w))
		return 1;
	a = calloc(1, sizeof(*a));
	struct lmm_ctx *b = calloc(1, sizeof(*b));
	if (!a || !b || lmm_ctx_init(d, a) || lmm_ctx_init(d, b))
		return 1;
	lmm_switch(w, a);
	lmm_switch(w, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, second, NULL))
		return 1;
	while (!atomic_load(&phase))
		;
	lmm_put(a); /* the last put: both workers lazy on a */
	lmm_switch(w, b);
	if (lmm_membarrier(b))
		return 1;
	lmm_switch(w, NULL);
	lmm_put(b);
	lmm_unlazy(w);
	while (lmm_barrier(d))
		;
	print_threads();
	atomic_store(&phase, 2);
	pthread_join(t, NULL);
	lmm_worker_offline(w);
	/*
	 * The second worker's offline may have ended the last hold on a
	 * (refcount counts it): with LMM_F_DEFER_FREE that free runs on the
	 * library thread, maybe still now, and destroy would say -EBUSY.
	 */
	while (lmm_barrier(d))
		;
	return lmm_domain_destroy(d) ? 1 : 0;
}
