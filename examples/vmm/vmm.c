/* SPDX-License-Identifier: MIT */
/*
 * A miniature VMM on lazymm, with a software MMU instead of a hypervisor.
 * For a VMM on real KVM see examples/kvm-vmm and examples/kvm-uk (and
 * docs/kvm.md); this one stays for what they do not show: guest memory
 * behind a software TLB, for machines without KVM (it runs on every CI
 * target), and lmm_membarrier.
 *
 * A guest's address space is a context holding a table of memory regions
 * (guest-physical ranges backed by mmap'd host memory). vCPU threads are
 * workers; each keeps a per-thread software TLB (guest page -> region) that
 * switch_ctx flushes and re-targets, exactly as a CPU's TLB follows CR3. A
 * vCPU that exits to the host (a context-less task) keeps its guest installed
 * lazily, TLB and all. An I/O worker adopts a guest's context to copy packets
 * into guest memory (vhost's kthread_use_mm). The control thread
 *
 *   - write-protects a region (dirty logging): clears its writable bit,
 *     bumps the guest's TLB generation and calls lmm_membarrier, waits for
 *     accesses in flight, then checks that nothing writes the region;
 *   - hot-unplugs and re-plugs memory: it replaces the guest's context with
 *     one whose table lacks (or regains) a region; the old region is
 *     munmap'ed from the free hook of the last table that maps it, i.e. only
 *     once no vCPU has any such table installed, not even lazily.
 *
 * The vCPU loop is lazymm(7)'s "The worker loop: a VMM" (switch to the
 * guest, run it, report a quiescent state after each exit, switch to NULL
 * before the next task; the idle bracket around a halt only); the free
 * hook that munmaps runs where "Hooks, calls and threads" says, never under
 * a lock of ours; protect() shows "Per-context memory barrier"
 * (lmm_membarrier).
 *
 * Every access is checked against the region table it was translated with;
 * any violation is reported and makes the exit status non-zero. A use of an
 * unmapped region would crash outright.
 *
 *   cc -O2 vmm.c $(pkg-config --cflags --libs lazymm) -o vmm
 *   ./vmm --scheme shootdown [--vcpus 2] [--vms 2] [--ms 500]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <lazymm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MAX_REGIONS 4
#define REGION_SIZE (64u * 1024u)
#define PAGE_SHIFT 12
#define TLB_ENTRIES 16
#define GMEM_LIVE 0x474d454du /* "GMEM" */
#define GMEM_DEAD 0xdeadbeefu

/* Host memory backing a region; shared by every table generation that maps it. */
struct block {
	_Atomic unsigned char *host;
	size_t size;
	atomic_int tables; /* tables mapping it: the last one freed unmaps it */
};

struct region {
	uint64_t gpa;
	size_t size;
	_Atomic unsigned char *host;
	atomic_bool writable;
	struct block *block;
};

/* A guest address space: one context. */
struct gmem {
	struct lmm_ctx ctx; /* first: a struct lmm_ctx * is a struct gmem * */
	unsigned vm;
	bool retired; /* replaced by a newer table of the same VM */
	atomic_uint magic;
	atomic_uint tlb_gen;    /* bumped when a region's rights shrink */
	atomic_int installed;   /* workers whose TLB targets this table */
	unsigned nregions;
	struct region region[MAX_REGIONS];
};

struct vm {
	pthread_mutex_t lock;
	struct gmem *mem; /* the VM holds one user reference on it */
	unsigned id;
	/* Replaced tables whose users have not all left: they may still write the shared memory. */
	atomic_int retired_in_use;
};

struct tlb_entry {
	uint64_t page; /* guest page + 1; 0: empty */
	struct region *region;
	bool writable;
};

/* A vCPU or the I/O worker. */
struct vcpu {
	struct lmm_worker *w;
	pthread_t thread;
	unsigned id;
	bool io;
	/* Written by switch_ctx, maybe inside a signal handler: atomics only. */
	_Atomic(struct gmem *) tlb_as;
	atomic_uint tlb_flushes;
	/* Owned by the vCPU's normal flow. */
	unsigned tlb_seen_flushes, tlb_gen;
	struct tlb_entry tlb[TLB_ENTRIES];
	atomic_uint seq; /* odd while an access is in flight */
	long accesses, fills, faults;
	unsigned rnd;
};

static struct {
	struct lmm_domain *d;
	struct vm *vms;
	unsigned nvms, nvcpus;
	struct vcpu *cpus; /* nvcpus vCPUs, then the I/O worker */
	atomic_bool stop;
	atomic_long violations, gmems, gmem_frees, maps, unmaps, deferred_unmaps;
	long membarriers, protects, unplugs, replugs;
} g;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			atomic_fetch_add(&g.violations, 1);               \
			fprintf(stderr, "vmm: violation: " __VA_ARGS__);  \
			fputc('\n', stderr);                              \
		}                                                         \
	} while (0)

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static struct gmem *gmem_of(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(g.d) ? NULL : (struct gmem *)c;
}

/* --- the hooks --- */

/* The CR3 write: retarget this worker's TLB and flush it. Async-signal-safe. */
static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	struct vcpu *v = lmm_worker_data(w);
	struct gmem *p = gmem_of(prev), *n = gmem_of(next);

	if (atomic_load(&v->tlb_as) != p || (n && atomic_load(&n->magic) != GMEM_LIVE))
		atomic_fetch_add(&g.violations, 1);
	if (n)
		atomic_fetch_add(&n->installed, 1);
	if (p)
		atomic_fetch_sub(&p->installed, 1);
	atomic_store(&v->tlb_as, n);
	atomic_fetch_add(&v->tlb_flushes, 1); /* the vCPU empties its entries before the next lookup */
}

/* The table's users are gone: nobody accesses through it, though vCPUs may still have it installed. */
static void teardown(struct lmm_ctx *c)
{
	struct gmem *m = gmem_of(c);
	if (m->retired)
		atomic_fetch_sub(&g.vms[m->vm].retired_in_use, 1);
}

/* Called once no worker has the table installed: only now may its memory go. */
static void free_gmem(struct lmm_ctx *c)
{
	struct gmem *m = gmem_of(c);
	CHECK(atomic_load(&m->installed) == 0, "table of vm %u freed while installed", m->vm);
	for (unsigned i = 0; i < g.nvcpus + 1; i++)
		CHECK(atomic_load(&g.cpus[i].tlb_as) != m, "table of vm %u freed under worker %u's TLB",
		      m->vm, i);
	atomic_store(&m->magic, GMEM_DEAD);
	for (unsigned i = 0; i < m->nregions; i++) {
		struct block *b = m->region[i].block;
		if (atomic_fetch_sub(&b->tables, 1) == 1) {
			munmap((void *)b->host, b->size);
			free(b);
			atomic_fetch_add(&g.unmaps, 1);
		}
	}
	atomic_fetch_add(&g.gmem_frees, 1);
	free(m);
}

/* --- guest memory --- */

static struct gmem *gmem_new(unsigned vm)
{
	struct gmem *m = calloc(1, sizeof(*m));
	if (!m || lmm_ctx_init(g.d, &m->ctx)) {
		fprintf(stderr, "vmm: out of memory\n");
		exit(1);
	}
	m->vm = vm;
	atomic_init(&m->magic, GMEM_LIVE);
	atomic_fetch_add(&g.gmems, 1);
	return m;
}

static void region_map(struct region *r, uint64_t gpa)
{
	void *p = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("vmm: mmap");
		exit(1);
	}
	struct block *b = malloc(sizeof(*b));
	if (!b) {
		fprintf(stderr, "vmm: out of memory\n");
		exit(1);
	}
	b->host = p;
	b->size = REGION_SIZE;
	atomic_init(&b->tables, 1);
	r->gpa = gpa;
	r->size = REGION_SIZE;
	r->host = p;
	atomic_init(&r->writable, true);
	r->block = b;
	atomic_fetch_add(&g.maps, 1);
}

/* Map region i of old in the new table too: its memory now has one more table. */
static void region_share(struct gmem *new, struct gmem *old, unsigned i)
{
	struct region *r = &new->region[new->nregions++];
	r->gpa = old->region[i].gpa;
	r->size = old->region[i].size;
	r->host = old->region[i].host;
	atomic_init(&r->writable, true);
	r->block = old->region[i].block;
	atomic_fetch_add(&r->block->tables, 1);
}

/* --- the access path --- */

static void tlb_flush(struct vcpu *v)
{
	memset(v->tlb, 0, sizeof(v->tlb));
}

/* One guest access by the worker running m; checked against m's region table. */
static void guest_access(struct vcpu *v, struct gmem *m, uint64_t gpa, bool write, unsigned char val)
{
	unsigned s = atomic_load_explicit(&v->seq, memory_order_relaxed);
	/* Relaxed + compiler barrier: lmm_membarrier in protect() supplies the other half. */
	atomic_store_explicit(&v->seq, s + 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst); /* pairs with lmm_membarrier in protect() */

	CHECK(lmm_current(v->w) == &m->ctx && atomic_load(&v->tlb_as) == m,
	      "worker %u accesses vm %u without its table installed", v->id, m->vm);
	/* Acquire pairs with protect()'s release: a new generation shows the new rights. */
	unsigned gen = atomic_load_explicit(&m->tlb_gen, memory_order_acquire);
	unsigned flushes = atomic_load_explicit(&v->tlb_flushes, memory_order_relaxed);
	if (flushes != v->tlb_seen_flushes || gen != v->tlb_gen) {
		tlb_flush(v);
		v->tlb_seen_flushes = flushes;
		v->tlb_gen = gen;
	}
	uint64_t page = gpa >> PAGE_SHIFT;
	struct tlb_entry *e = &v->tlb[page % TLB_ENTRIES];
	if (e->page != page + 1) { /* miss: walk the region table */
		e->region = NULL;
		for (unsigned i = 0; i < m->nregions; i++) {
			struct region *r = &m->region[i];
			if (gpa >= r->gpa && gpa < r->gpa + r->size) {
				e->region = r;
				/* Relaxed: ordered by the acquire of tlb_gen above. */
				e->writable = atomic_load_explicit(&r->writable, memory_order_relaxed);
			}
		}
		e->page = page + 1;
		v->fills++;
	}
	struct region *r = e->region;
	CHECK(r && r >= m->region && r < m->region + m->nregions && gpa >= r->gpa &&
		      gpa < r->gpa + r->size,
	      "worker %u: gpa %#llx of vm %u translated outside its region table", v->id,
	      (unsigned long long)gpa, m->vm);
	if (r) {
		if (write && !e->writable)
			v->faults++; /* a dirty-logging exit: the VMM would record the page */
		else if (write)
			atomic_store_explicit(&r->host[gpa - r->gpa], val, memory_order_relaxed);
		else
			(void)atomic_load_explicit(&r->host[gpa - r->gpa], memory_order_relaxed);
	}
	v->accesses++;
	/* Release pairs with protect()'s acquire: this access is done before it checks. */
	atomic_store_explicit(&v->seq, s + 2, memory_order_release);
}

/*
 * A users reference on the VM's current table. Deliberately a shared
 * lmm_get per VM entry, under the VM's mutex: a software MMU's table can be
 * replaced by the control thread at any entry, so each entry looks it up
 * anew. The KVM examples (examples/kvm-vmm, examples/kvm-uk) show the
 * per-worker pattern of lazymm(7), where the vCPU task holds its VM's
 * reference for its whole life and an entry takes no lock.
 */
static struct gmem *vm_mem_get(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	struct gmem *m = vm->mem;
	lmm_get(&m->ctx);
	pthread_mutex_unlock(&vm->lock);
	return m;
}

static uint64_t random_gpa(struct vcpu *v, struct gmem *m)
{
	struct region *r = &m->region[rnd(&v->rnd) % m->nregions];
	return r->gpa + rnd(&v->rnd) % r->size;
}

static void nap_us(long us)
{
	struct timespec ts = { 0, us * 1000 };
	nanosleep(&ts, NULL);
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	if (lmm_worker_online(g.d, v, &v->w)) {
		fprintf(stderr, "vmm: lmm_worker_online failed\n");
		exit(1);
	}
	while (!atomic_load(&g.stop)) {
		struct vm *vm = &g.vms[rnd(&v->rnd) % g.nvms];
		struct gmem *m = vm_mem_get(vm);
		lmm_switch(v->w, &m->ctx); /* VM entry: the guest's table is current */
		if (v->io) {
			/* vhost: copy a packet into guest memory, then let go of the guest. */
			struct region *r = &m->region[rnd(&v->rnd) % m->nregions];
			uint64_t gpa = r->gpa + rnd(&v->rnd) % (r->size - 64);
			for (unsigned i = 0; i < 64; i++)
				guest_access(v, m, gpa + i, true, (unsigned char)i);
		} else {
			for (unsigned i = 0; i < 256; i++)
				guest_access(v, m, random_gpa(v, m), rnd(&v->rnd) % 2, (unsigned char)rnd(&v->rnd));
		}
		/*
		 * The guest exited: nothing of it is held across this point. Under
		 * rcu, report a quiescent state so that a grace period need not
		 * nudge this vCPU (lazymm(7), "The worker loop: a VMM"); a no-op
		 * under the other schemes.
		 */
		lmm_quiescent(v->w);
		lmm_switch(v->w, NULL); /* VM exit to the host: the table stays installed lazily */
		lmm_put(&m->ctx);
		if (v->io || rnd(&v->rnd) % 8 == 0) {
			lmm_idle_enter(v->w); /* halted */
			nap_us(v->io ? 200 : 50);
			lmm_idle_exit(v->w);
		}
	}
	lmm_worker_offline(v->w);
	return NULL;
}

/* --- the control thread --- */

static unsigned long checksum(struct region *r)
{
	unsigned long sum = 0;
	for (size_t i = 0; i < r->size; i++)
		sum = sum * 31 + atomic_load_explicit(&r->host[i], memory_order_relaxed);
	return sum;
}

/* Dirty logging: write-protect a region, then prove nobody writes it. */
static void protect(struct vm *vm, unsigned *seed)
{
	struct gmem *m = vm_mem_get(vm);
	struct region *r = &m->region[rnd(seed) % m->nregions];

	atomic_store_explicit(&r->writable, false, memory_order_relaxed);
	/* Release pairs with guest_access's acquire: the new generation carries the new rights. */
	atomic_fetch_add_explicit(&m->tlb_gen, 1, memory_order_release);
	/*
	 * Every worker running this guest executes a barrier: an access that
	 * starts after it sees the new generation and refills its TLB; lazy
	 * workers run no guest code and see it when they come back.
	 */
	int ret = lmm_membarrier(&m->ctx);
	CHECK(ret == 0, "lmm_membarrier: %d", ret);
	g.membarriers++;
	/* Accesses already in flight may still use the old rights: let them finish. */
	for (unsigned i = 0; i < g.nvcpus + 1; i++) {
		/* Acquire pairs with guest_access's release of seq. */
		unsigned s = atomic_load_explicit(&g.cpus[i].seq, memory_order_acquire);
		/* Acquire again, as above: the access that ends the odd phase is done. */
		while (s % 2 && atomic_load_explicit(&g.cpus[i].seq, memory_order_acquire) == s)
			nap_us(1);
	}
	unsigned long before = checksum(r);
	nap_us(300); /* the vCPUs keep running and writing elsewhere */
	CHECK(checksum(r) == before, "vm %u: a write-protected region changed after lmm_membarrier", vm->id);
	atomic_store_explicit(&r->writable, true, memory_order_relaxed);
	/* Release: as above; granting rights needs no barrier, stale entries only fault. */
	atomic_fetch_add_explicit(&m->tlb_gen, 1, memory_order_release);
	g.protects++;
	lmm_put(&m->ctx);
}

/* Memory hot-unplug (or re-plug): the guest gets a new table; the old one goes when nobody has it. */
static void replace(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	struct gmem *old = vm->mem, *new = gmem_new(vm->id);
	if (old->nregions > 1) {
		for (unsigned i = 0; i + 1 < old->nregions; i++)
			region_share(new, old, i); /* all but the last: that one is unplugged */
		g.unplugs++;
	} else {
		region_share(new, old, 0);
		for (unsigned i = 1; i < MAX_REGIONS; i++)
			region_map(&new->region[new->nregions++], (uint64_t)i * 2 * REGION_SIZE);
		g.replugs++;
	}
	old->retired = true;
	atomic_fetch_add(&vm->retired_in_use, 1);
	vm->mem = new;
	pthread_mutex_unlock(&vm->lock);
	if (atomic_load(&old->installed) > 0)
		atomic_fetch_add(&g.deferred_unmaps, 1); /* a vCPU still has it: the unmap waits */
	lmm_put(&old->ctx); /* the VM's user reference: teardown, and free once uninstalled */
}

static unsigned arg_uint(const char *s, const char *name)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > 100000) {
		fprintf(stderr, "vmm: bad %s: %s\n", name, s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_gmem };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &ops, .flags = LMM_F_DEBUG };
	unsigned ms = 500;
	g.nvcpus = 2;
	g.nvms = 2;
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--scheme")) {
			if (lmm_scheme_parse(v, &cfg.scheme) || !lmm_scheme_available(cfg.scheme)) {
				fprintf(stderr, "vmm: scheme %s is not built in\n", v);
				return 2;
			}
		} else if (!strcmp(argv[i], "--vcpus")) {
			g.nvcpus = arg_uint(v, "--vcpus");
		} else if (!strcmp(argv[i], "--vms")) {
			g.nvms = arg_uint(v, "--vms");
		} else if (!strcmp(argv[i], "--ms")) {
			ms = arg_uint(v, "--ms");
		} else {
			fprintf(stderr, "usage: %s [--scheme NAME] [--vcpus N] [--vms N] [--ms N]\n", argv[0]);
			return 2;
		}
	}
	int ret = lmm_domain_create(&cfg, &g.d);
	if (ret) {
		fprintf(stderr, "vmm: lmm_domain_create: %s\n", strerror(-ret));
		return 1;
	}
	g.vms = calloc(g.nvms, sizeof(*g.vms));
	g.cpus = calloc(g.nvcpus + 1, sizeof(*g.cpus));
	if (!g.vms || !g.cpus)
		return 1;
	for (unsigned i = 0; i < g.nvms; i++) {
		struct vm *vm = &g.vms[i];
		pthread_mutex_init(&vm->lock, NULL);
		vm->id = i;
		vm->mem = gmem_new(i);
		for (unsigned r = 0; r < MAX_REGIONS; r++)
			region_map(&vm->mem->region[vm->mem->nregions++], (uint64_t)r * 2 * REGION_SIZE);
	}
	for (unsigned i = 0; i < g.nvcpus + 1; i++) {
		g.cpus[i].id = i;
		g.cpus[i].io = i == g.nvcpus;
		g.cpus[i].rnd = 1 + i;
		if (pthread_create(&g.cpus[i].thread, NULL, vcpu_main, &g.cpus[i]))
			return 1;
	}

	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned seed = 99;
	do {
		struct vm *vm = &g.vms[rnd(&seed) % g.nvms];
		if (rnd(&seed) % 3 == 0)
			replace(vm);
		else if (atomic_load(&vm->retired_in_use) == 0)
			protect(vm, &seed); /* older tables share the memory: wait until nobody uses them */
		else
			nap_us(50);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < (long)ms);
	atomic_store(&g.stop, true);

	long accesses = 0, fills = 0, faults = 0;
	for (unsigned i = 0; i < g.nvcpus + 1; i++) {
		pthread_join(g.cpus[i].thread, NULL);
		accesses += g.cpus[i].accesses;
		fills += g.cpus[i].fills;
		faults += g.cpus[i].faults;
	}
	for (unsigned i = 0; i < g.nvms; i++)
		lmm_put(&g.vms[i].mem->ctx); /* the VMs shut down */
	ret = lmm_barrier(g.d);
	CHECK(ret == 0, "lmm_barrier: %d", ret);
	struct lmm_stats st;
	lmm_stats(g.d, &st);
	CHECK(atomic_load(&g.gmem_frees) == atomic_load(&g.gmems), "%ld of %ld tables freed",
	      atomic_load(&g.gmem_frees), atomic_load(&g.gmems));
	CHECK(atomic_load(&g.unmaps) == atomic_load(&g.maps), "%ld of %ld regions unmapped",
	      atomic_load(&g.unmaps), atomic_load(&g.maps));

	printf("vmm (%s): %u vCPUs + 1 I/O worker on %u VMs for %u ms\n", lmm_scheme_name(cfg.scheme),
	       g.nvcpus, g.nvms, ms);
	printf("  %ld guest accesses, %ld TLB fills, %llu TLB flushes (switch_ctx), %llu lazy hits\n",
	       accesses, fills, (unsigned long long)st.installs, (unsigned long long)st.lazy_hits);
	printf("  %ld write-protects with lmm_membarrier, %ld dirty-logging faults\n", g.protects, faults);
	printf("  %ld unplugs + %ld replugs; %ld of them waited for a vCPU before unmapping; %ld/%ld regions unmapped\n",
	       g.unplugs, g.replugs, atomic_load(&g.deferred_unmaps), atomic_load(&g.unmaps),
	       atomic_load(&g.maps));
	for (unsigned i = 0; i < g.nvms; i++)
		pthread_mutex_destroy(&g.vms[i].lock);
	free(g.vms);
	free(g.cpus);
	ret = lmm_domain_destroy(g.d);
	CHECK(ret == 0, "lmm_domain_destroy: %d", ret);
	long v = atomic_load(&g.violations);
	printf("%s: %ld violations\n", v ? "FAIL" : "ok", v);
	return v ? 1 : 0;
}
