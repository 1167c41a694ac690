/* SPDX-License-Identifier: MIT */
/*
 * A multi-VM VMM on lazymm and real KVM.
 *
 * Each context is a real VM: a VM fd, 2 MiB of guest RAM (mmap +
 * KVM_SET_USER_MEMORY_REGION), one vCPU fd and its kvm_run mapping. A pool of
 * worker threads runs two kinds of tasks from per-worker queues:
 *
 *   - vCPU tasks: lmm_switch to the VM, then KVM_RUN through the worker's
 *     installed VM until the guest halts (HLT is handled in userspace:
 *     KVM_EXIT_HLT parks the vCPU task), then lmm_switch(w, NULL);
 *   - context-less tasks: I/O completions and the timer that wakes a halted
 *     vCPU (HALT_US after its hlt; the worker sleeps between lmm_idle_enter
 *     and lmm_idle_exit until then if it has nothing else). They touch no
 *     VM, so the last VM stays installed lazily.
 *
 * What a worker keeps installed lazily is really used while lazy. switch_ctx
 * writes the installed VM's guest RAM (the "loaded on worker" word, the way
 * KVM loads and clears a VMCS on a CPU), and the VMM's own kick signal
 * (SIGRTMIN, as Firecracker) writes through whatever VM the worker has
 * installed, whether it runs that VM or a context-less task: it sets the
 * vCPU's kvm_run->immediate_exit and counts the kick in a page of guest RAM.
 * A VM is torn down at power-off (users reach 0, usually while the worker
 * that ran it still holds it lazily) and its RAM, kvm_run mapping and fds
 * go only in the free hook, once no worker has it installed. The free hook
 * runs on lazymm's thread (LMM_F_DEFER_FREE): closing a VM fd makes KVM
 * destroy the VM, about 2 ms here, and a worker would stall in it (in
 * lmm_put under shootdown, in its next lmm_switch under refcount).
 *
 * Why the kick handler blocks lazymm's signal (sa_mask; lazymm(7), "Signals"): the handler reads
 * the VM the worker has installed and then writes through it. Under the
 * shootdown and rcu schemes lazymm's own handler may switch the worker to
 * init (switch_ctx inside a signal handler), after which the VM may be freed
 * by another thread; landing between the handler's read and its write, it
 * would leave the kick writing into unmapped memory. With lazymm's signal
 * blocked, the installed VM cannot change while the kick handler runs.
 * Why immediate_exit: a kick that lands after the loop checked for kicks
 * and before KVM_RUN enters the guest would be lost (the signal has already
 * been handled, so KVM_RUN does not see it pending); immediate_exit makes
 * that KVM_RUN return EINTR at once. No SA_RESTART: KVM_RUN is never
 * restarted, it returns EINTR with KVM_EXIT_INTR either way.
 *
 * Checked (any violation makes the exit status 1):
 *   - every guest I/O exit comes from the task's own VM (the guest reports
 *     the id the VMM wrote into its RAM) with that VM current and installed;
 *   - no kick or switch_ctx ever touches a VM whose resources were released;
 *   - teardown and free run exactly once per VM, free after teardown, with
 *     no worker having the VM installed; every VM is freed;
 *   - no file descriptor leaked (/proc/self/fd counted before and after).
 * --negative releases a VM at teardown instead of free: a use of a lazily
 * held VM after its release must then be caught under every scheme, and the
 * program exits 0 only if it was.
 *
 * Without /dev/kvm (or with a KVM that cannot run a long-mode guest) it
 * exits 77, meson's SKIP, with the reason.
 *
 *   cc -O2 -I../kvm kvm-vmm.c $(pkg-config --cflags --libs lazymm) -o kvm-vmm
 *   ./kvm-vmm --scheme shootdown [--workers 2] [--vms 4] [--ms 1000] [--no-affinity] [--negative]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kvm.h"
#include <lazymm.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#define RAM_SIZE (2u << 20)
/* The guest's words in its RAM (identity mapped). */
#define GPA_ID 0x500     /* written by the VMM at boot: the VM's id */
#define GPA_ROUNDS 0x504 /* written by the VMM at boot: halts before power-off */
#define GPA_KICKS 0x508  /* kicks that landed on a worker with this VM installed */
#define GPA_LOADED 0x50c /* worker id + 1 that has the VM installed, 0: none */
#define GPA_ROUND 0x510  /* the guest's round counter */
#define PORT_REPORT 0x10
#define PORT_POWEROFF 0x11
/* Halts before power-off: 32 to 95, so that VMs booted together do not all die together. */
#define GUEST_ROUNDS(id) (32 + (id) % 64)

/*
 * The guest, at 0x1000 (assembled with gcc -c, `objdump -d`):
 * report its id, halt; repeat [GPA_ROUNDS] times, then power off.
 */
static const unsigned char guest_code[] = {
	0x8b, 0x04, 0x25, 0x00, 0x05, 0x00, 0x00, /* 0: mov 0x500, %eax      the VM's id    */
	0xba, 0x10, 0x00, 0x00, 0x00,             /*    mov $0x10, %edx                     */
	0xef,                                     /*    out %eax, (%dx)      I/O exit       */
	0xf4,                                     /*    hlt                  KVM_EXIT_HLT   */
	0xff, 0x04, 0x25, 0x10, 0x05, 0x00, 0x00, /*    incl 0x510                          */
	0x8b, 0x0c, 0x25, 0x04, 0x05, 0x00, 0x00, /*    mov 0x504, %ecx                     */
	0x39, 0x0c, 0x25, 0x10, 0x05, 0x00, 0x00, /*    cmp %ecx, 0x510                     */
	0x72, 0xdb,                               /*    jb 0b                               */
	0xba, 0x11, 0x00, 0x00, 0x00,             /*    mov $0x11, %edx                     */
	0xef,                                     /*    out %eax, (%dx)      power off      */
	0xf4,                                     /* 1: hlt                                 */
	0xeb, 0xfd,                               /*    jmp 1b                              */
};

enum vm_state { VM_LIVE, VM_OFF, VM_RELEASED };

struct vm {
	struct lmm_ctx ctx; /* first: a struct lmm_ctx * is a struct vm * */
	unsigned id, home;  /* home: its worker when affinity is on */
	int fd;
	unsigned char *ram;
	struct kvm_vcpu vcpu;
	bool off;            /* the guest powered off (its vCPU task's own) */
	atomic_int state;    /* enum vm_state; VM_RELEASED seq_cst (vm_touch_begin), VM_OFF a relaxed note */
	atomic_int touching; /* the checker's guard: touches in flight (see vm_touch_begin) */
	atomic_int teardowns, frees;
	struct vm *next; /* every VM booted, for the final checks; the struct outlives its resources */
};

enum task_kind { T_VCPU, T_IO_DONE, T_TIMER };

struct task {
	enum task_kind kind;
	struct vm *vm;  /* T_VCPU, T_TIMER: the VM to run or to wake */
	uint32_t value; /* T_IO_DONE: what the guest reported */
	struct timespec due; /* T_TIMER: when it fires */
	struct task *next;
};

struct worker {
	struct lmm_worker *w;
	pthread_t thread;
	unsigned id;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct task *head, **tail;
	struct task *timers; /* armed, not yet due (unsorted: one per halted vCPU at most) */
	/* What switch_ctx installed here (NULL: init); read by the kick handler on this thread. */
	_Atomic(struct vm *) installed;
	atomic_uint kicked;      /* kicks the worker's loop has not seen yet */
	volatile sig_atomic_t in_vcpu; /* inside a vCPU task: a kick then is not a lazy one */
	/* Counters: the kick handler's are atomics, the rest the worker's own. */
	atomic_long kicks, kicks_lazy;
	long vcpu_tasks, io_exits, intr_exits, halts, idle_sleeps, ctxless_tasks, kicks_seen;
};

static struct {
	struct lmm_domain *d;
	int kvm;
	unsigned nworkers, nvms;
	bool affinity, negative;
	struct worker *workers;
	atomic_bool stop;
	pthread_mutex_t vms_lock;
	struct vm *vms;            /* every VM booted */
	atomic_uint vms_live;      /* booted, not powered off; relaxed: a count, nothing published by it */
	atomic_long released_touches, booted, freed, io_done;
} g;

static _Thread_local struct worker *self; /* the worker this thread is; read by the kick handler */

static struct vm *vm_of(struct lmm_ctx *c)
{
	return c == lmm_init_ctx(g.d) ? NULL : (struct vm *)c;
}

/*
 * The checker's guard around every write through a VM that is not the
 * running task's own: the kick handler's and switch_ctx's. A real VMM needs
 * none of it (lazymm frees only what no worker has installed); it is here so
 * that a touch of a released VM is reported instead of crashing, which is
 * what --negative relies on. The struct vm itself is never freed before the
 * end of the run, so reading its state is always safe.
 */
static bool vm_touch_begin(struct vm *vm)
{
	/* seq_cst, this and the load: with vm_release's seq_cst store, one sees the other (Dekker). */
	atomic_fetch_add(&vm->touching, 1);
	if (atomic_load(&vm->state) != VM_RELEASED)
		return true;
	RELAXED_INC(g.released_touches);
	kvm_violation("violation: a VM was touched after its resources were released\n");
	return false;
}

static void vm_touch_end(struct vm *vm)
{
	/* Release: pairs with vm_release's acquire; this touch is done before the unmap. */
	atomic_fetch_sub_explicit(&vm->touching, 1, memory_order_release);
}

/* A relaxed 32-bit word of guest RAM: the guest reads it too, and the host only counts. */
static void guest_store(struct vm *vm, unsigned gpa, uint32_t val)
{
	__atomic_store_n((uint32_t *)(vm->ram + gpa), val, __ATOMIC_RELAXED);
}

/* Unmap and close everything of the VM: the free hook's work (--negative: teardown's). */
static void vm_release(struct vm *vm)
{
	atomic_store(&vm->state, VM_RELEASED); /* seq_cst: see vm_touch_begin */
	/* Acquire: pairs with vm_touch_end; a touch that saw the VM live is finished. */
	while (atomic_load_explicit(&vm->touching, memory_order_acquire))
		sched_yield();
	kvm_vcpu_close(&vm->vcpu);
	munmap(vm->ram, RAM_SIZE);
	close(vm->fd);
}

/* --- the hooks --- */

/* Install a VM on a worker: its vCPU state is loaded here (KVM's vcpu_load). Async-signal-safe. */
static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	struct worker *me = lmm_worker_data(w);
	struct vm *p = vm_of(prev), *n = vm_of(next);

	/* Relaxed: written only by this thread (switch_ctx), read by its signal handler. */
	KVM_CHECK(RELAXED_LOAD(me->installed) == p,
	      "switch_ctx's prev is not what the worker had installed");
	if (p && vm_touch_begin(p))
		guest_store(p, GPA_LOADED, 0);
	if (p)
		vm_touch_end(p);
	if (n && vm_touch_begin(n))
		guest_store(n, GPA_LOADED, me->id + 1);
	if (n)
		vm_touch_end(n);
	/* Relaxed: as above; free's scan is ordered after it by lazymm (active is published after us). */
	atomic_store_explicit(&me->installed, n, memory_order_relaxed);
}

/* Power-off: users reached 0. The worker that ran the VM usually still holds it lazily. */
static void teardown(struct lmm_ctx *c)
{
	struct vm *vm = vm_of(c);
	KVM_CHECK(RELAXED_INC(vm->teardowns) == 0, "teardown ran twice");
	atomic_store_explicit(&vm->state, VM_OFF, memory_order_relaxed);
	if (g.negative)
		vm_release(vm); /* the bug --negative plants: released while still installed */
	atomic_fetch_sub_explicit(&g.vms_live, 1, memory_order_relaxed);
}

/* No worker has the VM installed: only now may its RAM, kvm_run page and fds go. */
static void free_vm(struct lmm_ctx *c)
{
	struct vm *vm = vm_of(c);
	KVM_CHECK(RELAXED_LOAD(vm->teardowns) == 1, "free before teardown");
	KVM_CHECK(RELAXED_INC(vm->frees) == 0, "free ran twice");
	for (unsigned i = 0; i < g.nworkers; i++)
		/* Relaxed: lazymm orders this after the worker's switch_ctx away from it. */
		KVM_CHECK(RELAXED_LOAD(g.workers[i].installed) != vm,
		      "free of a VM a worker still has installed");
	if (!g.negative)
		vm_release(vm);
	RELAXED_INC(g.freed);
}

/* --- the kick --- */

static void kick_handler(int sig)
{
	(void)sig;
	struct worker *me = self;
	int saved_errno = errno;
	if (!me)
		return;
	RELAXED_INC(me->kicked); /* same-thread reader */
	RELAXED_INC(me->kicks);  /* a counter */
	/* Relaxed: written by switch_ctx on this very thread, and lazymm's signal is blocked here. */
	struct vm *vm = RELAXED_LOAD(me->installed);
	if (vm) {
		if (!me->in_vcpu)
			RELAXED_INC(me->kicks_lazy); /* a counter */
		if (vm_touch_begin(vm)) {
			/* Relaxed: KVM reads it at the next KVM_RUN entry of this vCPU, on whatever thread. */
			__atomic_store_n(&vm->vcpu.run->immediate_exit, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add((uint32_t *)(vm->ram + GPA_KICKS), 1, __ATOMIC_RELAXED);
		}
		vm_touch_end(vm);
	}
	errno = saved_errno;
}

/* --- tasks --- */

#define HALT_US 100 /* a halted vCPU's timer fires this long after its hlt */

static struct task *task_new(enum task_kind kind, struct vm *vm, uint32_t value)
{
	struct task *t = malloc(sizeof(*t));
	if (!t)
		kvm_die("out of memory");
	*t = (struct task){ .kind = kind, .vm = vm, .value = value };
	return t;
}

static void push(struct worker *to, enum task_kind kind, struct vm *vm, uint32_t value)
{
	struct task *t = task_new(kind, vm, value);
	pthread_mutex_lock(&to->lock);
	*to->tail = t;
	to->tail = &t->next;
	pthread_cond_signal(&to->wake);
	pthread_mutex_unlock(&to->lock);
}

/* Where a VM's vCPU task goes: its home worker with affinity, any worker without. */
static struct worker *vcpu_queue(struct vm *vm, unsigned *seed)
{
	return &g.workers[g.affinity ? vm->home : kvm_rnd(seed) % g.nworkers];
}

static void arm_timer(struct worker *me, struct vm *vm)
{
	struct task *t = task_new(T_TIMER, vm, 0);
	clock_gettime(CLOCK_MONOTONIC, &t->due);
	t->due.tv_nsec += HALT_US * 1000;
	if (t->due.tv_nsec >= 1000000000) {
		t->due.tv_sec++;
		t->due.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&me->lock);
	t->next = me->timers;
	me->timers = t;
	pthread_mutex_unlock(&me->lock);
}

static bool before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Under me->lock: unlink and return a timer that is due; else NULL, and *next is the earliest one's time. */
static struct task *timer_due(struct worker *me, struct timespec *next)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	for (struct task **p = &me->timers; *p; p = &(*p)->next) {
		if (!before(&now, &(*p)->due)) {
			struct task *t = *p;
			*p = t->next;
			return t;
		}
		if (p == &me->timers || before(&(*p)->due, next))
			*next = (*p)->due;
	}
	return NULL;
}

/*
 * A vCPU task: run the guest through the installed VM until it halts. The
 * loop of lazymm(7), "The worker loop: a VMM": switch to the task's VM, run,
 * switch to NULL before the task can run elsewhere.
 */
static void run_vcpu(struct worker *me, struct vm *vm)
{
	lmm_switch(me->w, &vm->ctx); /* the vCPU task holds the VM's users reference */
	me->in_vcpu = 1;
	me->vcpu_tasks++;
	/* KVM_RUN goes through what switch_ctx installed: a wrong install shows as another VM's I/O. */
	struct vm *in = RELAXED_LOAD(me->installed); /* relaxed: written on this thread */
	KVM_CHECK(in == vm, "a vCPU task runs without its VM installed");
	struct kvm_vcpu *vcpu = in ? &in->vcpu : &vm->vcpu;
	for (;;) {
		/*
		 * A VMM looks at its requests for the vCPU here; a kick that
		 * lands after this has set immediate_exit, so the KVM_RUN below
		 * returns at once. Relaxed: the kick handler runs on this thread.
		 */
		me->kicks_seen += atomic_exchange_explicit(&me->kicked, 0, memory_order_relaxed);
		int exit = kvm_run_once(vcpu);
		/*
		 * After each KVM_RUN exit, nothing of the guest is held across
		 * this point: under rcu, report a quiescent state, so that a
		 * grace period never has to interrupt this worker's KVM_RUN with
		 * a nudge (lazymm(7), "The worker loop: a VMM"). A no-op under
		 * the other schemes.
		 */
		lmm_quiescent(me->w);
		if (exit < 0) { /* EINTR: a kick or lazymm's signal; the guest resumes where it was */
			__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_RELAXED); /* as in the handler */
			me->intr_exits++;
			continue;
		}
		if (exit == KVM_EXIT_HLT) {
			me->halts++;
			break;
		}
		if (exit == KVM_EXIT_IO && vcpu->run->io.port == PORT_REPORT) {
			me->io_exits++;
			KVM_CHECK(kvm_io_value(vcpu->run) == vm->id && lmm_current(me->w) == &vm->ctx,
			      "guest I/O from a VM other than the task's own");
			push(me, T_IO_DONE, NULL, kvm_io_value(vcpu->run));
			continue;
		}
		if (exit == KVM_EXIT_IO && vcpu->run->io.port == PORT_POWEROFF) {
			vm->off = true;
			continue;
		}
		kvm_violation("violation: an unexpected exit\n");
		fprintf(stderr, "  vm %u: exit reason %d\n", vm->id, exit);
		vm->off = true;
		break;
	}
	me->in_vcpu = 0;
	lmm_switch(me->w, NULL); /* back to the VMM: the VM stays installed lazily */
	if (vm->off)
		lmm_put(&vm->ctx); /* power-off: teardown now, free once no worker has it installed */
	else
		arm_timer(me, vm); /* the halted vCPU waits for its timer; the worker may idle meanwhile */
}

static void *worker_main(void *arg)
{
	struct worker *me = arg;
	unsigned seed = 7 + me->id;
	self = me;
	if (lmm_worker_online(g.d, me, &me->w))
		kvm_die("lmm_worker_online failed");
	for (;;) {
		struct task *t;
		struct timespec next;
		pthread_mutex_lock(&me->lock);
		for (;;) {
			if ((t = me->head)) {
				me->head = t->next;
				if (!me->head)
					me->tail = &me->head;
				break;
			}
			if ((t = timer_due(me, &next)))
				break;
			/* Relaxed: set before a locked signal. Armed timers belong to live VMs. */
			if (!me->timers && RELAXED_LOAD(g.stop))
				break;
			/*
			 * Idle: no lmm_switch between these two. The lazy VM stays
			 * installed. The queue lock is held across the bracket (the
			 * condition wait needs it): legal only because this VMM's
			 * switch_ctx takes no lock, and lmm_idle_enter/exit may run
			 * it under rcu (lazymm(7), "Hooks, calls and threads"). A
			 * switch_ctx that took this lock would deadlock here.
			 */
			lmm_idle_enter(me->w);
			me->idle_sleeps++;
			if (me->timers)
				pthread_cond_timedwait(&me->wake, &me->lock, &next);
			else
				pthread_cond_wait(&me->wake, &me->lock);
			lmm_idle_exit(me->w);
		}
		pthread_mutex_unlock(&me->lock);
		if (!t)
			break;
		switch (t->kind) {
		case T_VCPU:
			run_vcpu(me, t->vm);
			break;
		case T_IO_DONE: /* host-side device model: no VM touched */
			me->ctxless_tasks++;
			RELAXED_INC(g.io_done);
			break;
		case T_TIMER: /* the halted vCPU's timer fired: wake it */
			me->ctxless_tasks++;
			push(vcpu_queue(t->vm, &seed), T_VCPU, t->vm, 0);
			break;
		}
		free(t);
	}
	lmm_worker_offline(me->w); /* switches to init: the last lazily held VM can go */
	self = NULL;
	return NULL;
}

/* --- booting VMs --- */

static void vm_boot(unsigned id, unsigned *seed)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		kvm_die("out of memory");
	vm->id = id;
	vm->home = id % g.nworkers;
	vm->fd = kvm_vm_new(g.kvm);
	vm->ram = kvm_ram_new(vm->fd, 0, RAM_SIZE);
	memcpy(vm->ram + KVM_CODE_GPA, guest_code, sizeof(guest_code));
	kvm_identity_map(vm->ram, RAM_SIZE);
	guest_store(vm, GPA_ID, id);
	guest_store(vm, GPA_ROUNDS, GUEST_ROUNDS(id));
	int e = kvm_vcpu_new(g.kvm, vm->fd, 0, KVM_PML4_GPA, KVM_CODE_GPA, &vm->vcpu);
	if (e)
		kvm_die("vCPU of VM %u: %s", id, strerror(-e));
	if (lmm_ctx_init(g.d, &vm->ctx))
		kvm_die("lmm_ctx_init failed");
	pthread_mutex_lock(&g.vms_lock);
	vm->next = g.vms;
	g.vms = vm;
	pthread_mutex_unlock(&g.vms_lock);
	RELAXED_INC(g.vms_live);
	RELAXED_INC(g.booted);
	push(vcpu_queue(vm, seed), T_VCPU, vm, 0);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_vm };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &ops, .flags = LMM_F_DEBUG | LMM_F_DEFER_FREE };
	unsigned ms = 1000;
	g.nworkers = 2;
	g.nvms = 4;
	g.affinity = true;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--scheme")) {
			cfg.scheme = kvm_arg_scheme(v), i++;
		} else if (!strcmp(argv[i], "--workers")) {
			g.nworkers = kvm_arg_uint(v, argv[i]), i++;
		} else if (!strcmp(argv[i], "--vms")) {
			g.nvms = kvm_arg_uint(v, argv[i]), i++;
		} else if (!strcmp(argv[i], "--ms")) {
			ms = kvm_arg_uint(v, argv[i]), i++;
		} else if (!strcmp(argv[i], "--no-affinity")) {
			g.affinity = false;
		} else if (!strcmp(argv[i], "--negative")) {
			g.negative = true;
		} else {
			fprintf(stderr, "usage: %s [--scheme NAME] [--workers N] [--vms N] [--ms N] "
					"[--no-affinity] [--negative]\n", argv[0]);
			return 2;
		}
	}
	int fds_before = kvm_count_fds();
	g.kvm = kvm_open_or_skip();
	int ret = lmm_domain_create(&cfg, &g.d);
	if (ret)
		kvm_die("lmm_domain_create: %s", strerror(-ret));
	/* The kick: the VMM's own signal, lazymm's blocked while it runs (see the top). */
	kvm_kick_install(SIGRTMIN, kick_handler, lmm_domain_signo(g.d));
	pthread_mutex_init(&g.vms_lock, NULL);
	g.workers = calloc(g.nworkers, sizeof(*g.workers));
	if (!g.workers)
		kvm_die("out of memory");
	for (unsigned i = 0; i < g.nworkers; i++) {
		struct worker *wk = &g.workers[i];
		wk->id = i;
		wk->tail = &wk->head;
		pthread_mutex_init(&wk->lock, NULL);
		pthread_condattr_t ca; /* timers are CLOCK_MONOTONIC */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&wk->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	for (unsigned i = 0; i < g.nworkers; i++)
		if (pthread_create(&g.workers[i].thread, NULL, worker_main, &g.workers[i]))
			kvm_die("pthread_create failed");

	/* The control thread: keeps nvms VMs booted, and kicks random workers meanwhile. */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned seed = 99, next_id = 1;
	long kicks_sent = 0;
	while (ms_since(&t0) < (long)ms) {
		if (RELAXED_LOAD(g.vms_live) < g.nvms)
			vm_boot(next_id++, &seed);
		else
			nanosleep(&(struct timespec){ 0, 100 * 1000 }, NULL);
		if (pthread_kill(g.workers[kvm_rnd(&seed) % g.nworkers].thread, SIGRTMIN) == 0)
			kicks_sent++;
	}
	while (RELAXED_LOAD(g.vms_live)) /* every guest runs to its power-off */
		nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
	/* Relaxed: each queue's lock orders it before the worker's next look. */
	atomic_store_explicit(&g.stop, true, memory_order_relaxed);
	for (unsigned i = 0; i < g.nworkers; i++) {
		pthread_mutex_lock(&g.workers[i].lock);
		pthread_cond_signal(&g.workers[i].wake);
		pthread_mutex_unlock(&g.workers[i].lock);
	}
	long vcpu_tasks = 0, io_exits = 0, intr_exits = 0, halts = 0, ctxless = 0, kicks = 0, kicks_lazy = 0;
	long kicks_seen = 0, idle_sleeps = 0;
	for (unsigned i = 0; i < g.nworkers; i++) {
		struct worker *wk = &g.workers[i];
		pthread_join(wk->thread, NULL);
		vcpu_tasks += wk->vcpu_tasks;
		io_exits += wk->io_exits;
		intr_exits += wk->intr_exits;
		halts += wk->halts;
		ctxless += wk->ctxless_tasks;
		kicks_seen += wk->kicks_seen;
		idle_sleeps += wk->idle_sleeps;
		kicks += RELAXED_LOAD(wk->kicks);
		kicks_lazy += RELAXED_LOAD(wk->kicks_lazy);
	}
	ret = lmm_barrier(g.d);
	KVM_CHECK(ret == 0, "lmm_barrier failed");
	struct lmm_stats st;
	lmm_stats(g.d, &st);
	long booted = RELAXED_LOAD(g.booted);
	KVM_CHECK(RELAXED_LOAD(g.freed) == booted, "not every VM was freed");
	for (struct vm *vm = g.vms, *next; vm; vm = next) {
		next = vm->next;
		KVM_CHECK(RELAXED_LOAD(vm->teardowns) == 1 && RELAXED_LOAD(vm->frees) == 1,
		      "a VM was not torn down and freed exactly once");
		free(vm);
	}
	KVM_CHECK(RELAXED_LOAD(g.io_done) == io_exits, "an I/O completion was lost");
	ret = lmm_domain_destroy(g.d);
	KVM_CHECK(ret == 0, "lmm_domain_destroy failed");
	signal(SIGRTMIN, SIG_DFL);
	close(g.kvm);
	int fds_after = kvm_count_fds();
	KVM_CHECK(fds_after == fds_before, "file descriptors leaked");

	printf("kvm-vmm (%s%s): %u workers, %ld VMs (%u at a time, %d to %d halts each) for %u ms, affinity %s\n",
	       lmm_scheme_name(cfg.scheme), g.negative ? ", --negative" : "", g.nworkers, booted, g.nvms,
	       GUEST_ROUNDS(0), GUEST_ROUNDS(63), ms, g.affinity ? "on" : "off");
	printf("  %ld vCPU tasks, %ld context-less tasks, %ld idle sleeps; %ld I/O exits, %ld halts, %ld EINTR exits\n",
	       vcpu_tasks, ctxless, idle_sleeps, io_exits, halts, intr_exits);
	printf("  %llu VM installs (switch_ctx), %llu lazy hits; %ld kicks sent, %ld taken (%ld on a lazily held VM, "
	       "%ld seen by a vCPU loop)\n", (unsigned long long)st.installs, (unsigned long long)st.lazy_hits,
	       kicks_sent, kicks, kicks_lazy, kicks_seen);
	printf("  %ld VMs torn down and freed; fds %d before, %d after\n", RELAXED_LOAD(g.freed), fds_before,
	       fds_after);
	pthread_mutex_destroy(&g.vms_lock);
	for (unsigned i = 0; i < g.nworkers; i++) {
		pthread_mutex_destroy(&g.workers[i].lock);
		pthread_cond_destroy(&g.workers[i].wake);
	}
	free(g.workers);
	long v = RELAXED_LOAD(kvm_violations), touched = RELAXED_LOAD(g.released_touches);
	if (g.negative) {
		/* Only the planted bug may show: a touch of a released VM, and nothing else. */
		bool caught = touched > 0 && v == touched;
		printf("%s: --negative: %ld touches of released VMs caught, %ld other violations\n",
		       caught ? "ok" : "FAIL", touched, v - touched);
		return caught ? 0 : 1;
	}
	printf("%s: %ld violations\n", v ? "FAIL" : "ok", v);
	return v ? 1 : 0;
}
