/*
 * Promela model of the hazard scheme: lib/scheme/hazard.c and its two lazy
 * hooks inlined from lib/scheme/hazard.h (hazard_lazy_enter, hazard_lazy_resume)
 * on the core's switch path (lib/switch.c install/lmm_switch/lmm__unlazy),
 * lmm_put/lmm_drop (lib/ctx.c) and offline (lib/worker.c do_offline). Names
 * are the code's; each step cites the function it stands for (no line
 * numbers: they go stale). hazard uses no signals, so lmm_switch's critical
 * bracket (and its absence on the two lazy transitions) changes nothing
 * here.
 *
 * Parties: NW = 2 workers and main (a non-worker thread). Contexts: 0 = init,
 * 1 = A, 2 = B; main holds the first user of each and puts it at any time.
 * A worker runs a task of a context either as a user (lmm_get) or as a
 * service worker on a count reference only (lmm_grab; kthread_use_mm), goes
 * lazy, puts/drops its reference (maybe the last user: it runs the
 * conversion itself), maybe unlazies, and finally goes offline.
 *
 * Slots: lazy[w] holds c (a hazard) or c + OWNED (the worker's own count
 * reference: the count-only-context rule, the users check in
 * hazard_lazy_enter); drops[w] holds a handed-over reference (a context id)
 * or CLOSED while offline.
 *
 * The conversion is the code's two-pass form: hazard_users_zero's first
 * scan (convert_worker, hand_over) hands references out; if it handed any,
 * a second scan (reclaim_stale) takes back every reference left in the drop
 * slot of a worker that is not lazy on its context, whichever conversion
 * put it there.
 *
 * The model is sequentially consistent. The store->load orders the code
 * needs are light/heavy fence pairs: the hazard before the users load in
 * hazard_lazy_enter against users == 0 before the scan in
 * hazard_users_zero; and the lazy slot cleared before the drop-slot peek in
 * hazard_lazy_resume/hazard_lazy_release against the hand-offs before
 * reclaim_stale. Under SC every step is already ordered, so the model checks
 * the protocol's decisions, not the fences; the other orderings are
 * acquire/release pairs named in the code.
 *
 * Checked exhaustively: never installed or left after free (INSTALL), free
 * never while installed, never twice, never before users reached 0 (RELEASE),
 * no deadlock (invalid end states), and at the end everything freed with
 * every count at 0 (no leaked reference in a drop slot).
 *
 * Seeded bug BUG_COUNTONLY (hazard-countonly-bug.pml): hazard_lazy_enter
 * without the users check: a service worker that goes lazy after the last
 * user's scan publishes a hazard nobody converts, and the context is freed
 * under it.
 */

#define NW 2
#define NC 3
#define INIT 0
#define MAIN NW
#define OWNED 4
#define CLOSED 3

#define LIVE 0
#define FREED 2

byte users[NC], count[NC], state[NC], mask[NC], installed[NC];
byte act[NW + 1], current[NW + 1];
byte lazy[NW + 1];  /* hot.hazard.lazy */
byte drops[NW + 1]; /* hot.hazard.drop */
byte done;

#define BIT(i) (1 << (i))
#define W(s) atomic { s }

/* lmm__ctx_release -> lmm__run_free: the application's free hook checks. */
inline RELEASE(x)
{
	W(assert(installed[x] == 0); assert(state[x] != FREED); assert(users[x] == 0); state[x] = FREED)
}

/* lmm_drop (ctx.c): the final drop calls count_zero = hazard_count_zero -> release. */
inline DROP(x)
{
	W(count[x]--; last = (count[x] == 0));
	if
	:: last -> last = 0; RELEASE(x)
	:: else
	fi
}

/* dispose: ours goes back to the bulk (no longer handed), others are dropped after the scan. */
inline DISPOSE(v)
{
	if
	:: v == c -> spare++; handed--
	:: else -> dd[v]++
	fi
}

/*
 * reclaim_stale for worker i: a reference in its drop slot on a context it
 * is not lazy on (slot_ctx of its lazy slot) is taken back with a CAS and
 * disposed of; the worker's drain races us through the same slot.
 */
inline RECLAIM_STALE()
{
	W(v = drops[i]);
	if
	:: v != 0 && v != CLOSED ->
		W(lz = lazy[i]);
		if
		:: lz != v && lz != v + OWNED ->
			W(if
			  :: drops[i] == v -> drops[i] = 0; got = 1
			  :: else -> got = 0
			  fi);
			if
			:: got -> got = 0; DISPOSE(v)
			:: else
			fi
		:: else
		fi
	:: else
	fi;
	v = 0; lz = 0
}

/* hand_over to worker i. */
inline HAND_OVER()
{
	held = c;
	W(cur = drops[i]);                           /* the acquire load of the drop slot */
	handed++;
	do
	:: cur == CLOSED -> DISPOSE(held); break     /* w went offline */
	:: cur != CLOSED ->
		if
		:: cur != 0 ->
			W(lz = lazy[i]);             /* occupied: still lazy on what we hold? */
			if
			:: lz != held -> DISPOSE(held); break
			:: else
			fi
		:: else
		fi;
		W(if                                 /* the CAS */
		  :: drops[i] == cur -> drops[i] = held; ok = 1
		  :: else -> cur = drops[i]; ok = 0
		  fi);
		if
		:: !ok -> skip
		:: ok && cur == 0 -> break           /* handed (reclaim_stale may take it back) */
		:: ok && cur != 0 ->
			W(lz = lazy[i]);             /* we own cur now: stolen, or swap it back in */
			if
			:: lz != cur -> DISPOSE(cur); break
			:: else -> tmp = cur; cur = held; held = tmp
			fi
		fi
	od;
	held = 0; cur = 0; ok = 0; lz = 0; tmp = 0
}

/* hazard_users_zero: the last user, after teardown, before its count drop. */
inline USERS_ZERO()
{
	i = 0;
	do
	:: i < NW ->
		if
		:: (mask[c] & BIT(i)) ->             /* lmm__mask_for_each */
			W(lz = lazy[i]);             /* convert_worker */
			if
			:: lz == c ->
				if
				:: !grabbed -> W(count[c] = count[c] + NW); grabbed = 1; spare = NW /* the bulk grab */
				:: else
				fi;
				spare--;
				HAND_OVER()
			:: else
			fi;
			lz = 0
		:: else
		fi;
		i++
	:: else -> break
	od;
	i = 0;
	/* Handed any: (heavy fence) the second pass, lmm__mask_for_each(c, reclaim_stale). */
	if
	:: handed > 0 ->
		do
		:: i < NW ->
			if
			:: (mask[c] & BIT(i)) -> RECLAIM_STALE()
			:: else
			fi;
			i++
		:: else -> break
		od;
		i = 0
	:: else
	fi;
	handed = 0;
	if
	:: spare > 0 -> W(count[c] = count[c] - spare) /* the second and last RMW */
	:: else
	fi;
	spare = 0; grabbed = 0;
	/* the stolen references, any of which may be a final drop */
	for (i : 1 .. NC - 1) {
		do
		:: dd[i] > 0 -> dd[i]--; DROP(i)
		:: else -> break
		od
	}
	i = 0
}

/* lmm_put (ctx.c): the last user tears down, converts, then drops the users' reference. */
inline PUT()
{
	W(users[c]--; last = (users[c] == 0));
	if
	:: last -> last = 0; USERS_ZERO(); DROP(c)
	:: else
	fi
}

/* lmm__hazard_drain, after hazard_lazy_resume/release's relaxed peek found the slot non-empty
 * (one step: a peek that sees 0 is this step seeing 0, a peek that sees a reference is this
 * step at the exchange). */
inline DRAIN()
{
	W(v = drops[me]; if :: v != 0 && v != CLOSED -> drops[me] = 0 :: else fi);
	if
	:: v != 0 && v != CLOSED -> DROP(v)
	:: else
	fi;
	v = 0
}

/* hazard_lazy_enter (lib/scheme/hazard.h) on x. */
inline LAZY_ENTER(x)
{
	W(lazy[me] = x);                             /* the release store, then the light fence */
#ifdef BUG_COUNTONLY
	skip
#else
	W(u = users[x]);                             /* the users check */
	if
	:: u > 0 -> skip
	:: else ->
		W(count[x]++);                       /* a reference of our own */
		W(lazy[me] = x + OWNED)              /* HAZARD_OWNED */
	fi;
	u = 0
#endif
}

/* hazard_lazy_resume (lib/scheme/hazard.h) on x: clear, light fence, drop OWNED, peek/drain. */
inline LAZY_RESUME(x)
{
	W(lz = lazy[me]; lazy[me] = 0);
	if
	:: lz >= OWNED -> W(count[x]--)
	:: else
	fi;
	lz = 0;
	DRAIN()
}

/* hazard_lazy_release on x, after the install published active. */
inline LAZY_RELEASE(x)
{
	W(lz = lazy[me]; lazy[me] = 0);
	if
	:: lz >= OWNED -> lz = 0; DROP(x)
	:: else -> lz = 0
	fi;
	DRAIN()
}

/* switch.c install() up to the store of active, one step; then lazy_release. */
inline INSTALL(next, prev_lazy)
{
	W(prev = act[me];
	  assert(prev == INIT || state[prev] != FREED);
	  assert(next == INIT || state[next] != FREED);
	  if
	  :: next != INIT -> mask[next] = mask[next] | BIT(me); installed[next]++
	  :: else
	  fi;
	  if
	  :: prev != INIT -> installed[prev]--
	  :: else
	  fi;
	  act[me] = next);
	if
	:: prev_lazy -> LAZY_RELEASE(prev)
	:: else
	fi;
	prev = 0
}

/* lmm_switch (switch.c: switch_body's lazy_enter and lazy_hit, switch_slow's install). */
inline SWITCH(next)
{
	if
	:: next == 0 ->
		if
		:: current[me] != 0 ->
			W(current[me] = 0);
			if
			:: act[me] != INIT -> LAZY_ENTER(act[me])
			:: else
			fi
		:: else
		fi
	:: next != 0 && next == act[me] ->
		if
		:: current[me] == 0 -> W(current[me] = next); LAZY_RESUME(next)
		:: else
		fi
	:: next != 0 && next != act[me] ->
		plazy = (current[me] == 0 && act[me] != INIT);
		W(current[me] = next);
		INSTALL(next, plazy);
		plazy = 0
	fi
}

/* lmm__unlazy (switch.c). */
inline UNLAZY()
{
	if
	:: current[me] == 0 && act[me] != INIT -> INSTALL(INIT, 1)
	:: else
	fi
}

proctype Worker(byte me)
{
	byte c, i, k, prev, lz, cur, held, tmp, spare, v, u, ref, handed;
	byte dd[NC];
	bool last, ok, got, grabbed, plazy;

	for (k : 1 .. 2) {
		if
		:: c = 1
		:: c = 2
		fi;
		if
		:: true -> W(if :: users[c] > 0 -> users[c]++; ref = 1 :: else fi) /* lmm_get_not_zero */
		:: true -> W(if :: users[c] > 0 -> count[c]++; ref = 2 :: else fi) /* lmm_grab: a service worker */
		fi;
		if
		:: ref != 0 ->
			SWITCH(c);
			SWITCH(0);                   /* lazy on c (count-only if users left meanwhile) */
			if
			:: ref == 1 -> PUT()
			:: ref == 2 -> DROP(c)
			fi
		:: else
		fi;
		ref = 0; c = 0;
		if
		:: UNLAZY()
		:: skip
		fi
	}
	/* do_offline (worker.c): unlazy, then hazard_worker_offline */
	UNLAZY();
	W(v = drops[me]; drops[me] = CLOSED);
	if
	:: v != 0 && v != CLOSED -> DROP(v)
	:: else
	fi;
	v = 0;
	W(done++)
}

init
{
	byte me = MAIN, c, i, prev, lz, cur, held, tmp, spare, v, handed;
	byte dd[NC];
	bool last, ok, got, grabbed;

	atomic {
		users[1] = 1; count[1] = 1;
		users[2] = 1; count[2] = 1;
		run Worker(0);
		run Worker(1)
	}
	c = 1; PUT();
	c = 2; PUT();
	(done == NW);
	for (i : 1 .. NC - 1) {
		assert(state[i] == FREED);
		assert(count[i] == 0 && installed[i] == 0)
	}
}
