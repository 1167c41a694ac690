/*
 * Promela model of the hazard scheme: lib/scheme_hazard.c on the core's
 * switch path (lib/switch.c install/lmm_switch/lmm__unlazy), lmm_put/lmm_drop
 * (lib/ctx.c) and offline (lib/worker.c do_offline). Names are the code's;
 * line numbers are scheme_hazard.c's when this model was written (issue 7).
 *
 * Parties: NW = 2 workers and main (a non-worker thread). Contexts: 0 = init,
 * 1 = A, 2 = B; main holds the first user of each and puts it at any time.
 * A worker runs a task of a context either as a user (lmm_get) or as a
 * service worker on a count reference only (lmm_grab; kthread_use_mm), goes
 * lazy, puts/drops its reference (maybe the last user: it runs the
 * conversion itself), maybe unlazies, and finally goes offline.
 *
 * Slots: lazy[w] holds c (a hazard) or c + OWNED (the worker's own count
 * reference: the count-only-context rule, hazard_lazy_enter 79-90); drops[w]
 * holds a handed-over reference (a context id) or CLOSED while offline.
 *
 * The model is sequentially consistent. The one store->load order the code
 * needs (the hazard before the users load in hazard_lazy_enter, users == 0
 * before the scan in hazard_users_zero) is the light/heavy fence pair
 * (lines 77 and 296); the other orderings are acquire/release pairs named in
 * the code.
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
byte lazy[NW + 1];  /* slot[LAZY] */
byte drops[NW + 1]; /* slot[DROP] */
byte done;

#define BIT(i) (1 << (i))
#define W(s) atomic { s }

/* lmm__ctx_release -> run_free: the application's free hook checks. */
inline RELEASE(x)
{
	W(assert(installed[x] == 0); assert(state[x] != FREED); assert(users[x] == 0); state[x] = FREED)
}

/* lmm_drop (ctx.c): the final drop calls count_zero = hazard_count_zero (313-320) -> release. */
inline DROP(x)
{
	W(count[x]--; last = (count[x] == 0));
	if
	:: last -> last = 0; RELEASE(x)
	:: else
	fi
}

/* dispose (155-174): ours goes back to the bulk, others are dropped after the scan. */
inline DISPOSE(v)
{
	if
	:: v == c -> spare++
	:: else -> dd[v]++
	fi
}

/*
 * take_back_if_late, as the code first did it: re-read the lazy slot right
 * after a successful hand-off. The code now does this in a second pass
 * (reclaim_stale in lib/scheme_hazard.c), after one more heavy fence, and
 * for any stale occupant of a drop slot, not only its own reference: on real
 * (TSO or weaker) hardware the immediate re-read could miss the worker's
 * clear of its lazy slot (store buffering), which this sequentially
 * consistent model cannot show. Under SC both forms take a reference back
 * only from a worker not lazy on it at the time of the check, which is what
 * the safety property rests on. The line numbers in this model predate that
 * change. Updating the model to the two-pass form is open work.
 */
inline TAKE_BACK()
{
	W(lz = lazy[i]);
	if
	:: lz != c ->
		W(if
		  :: drops[i] == c -> drops[i] = 0; got = 1
		  :: else -> got = 0
		  fi);
		if
		:: got -> got = 0; DISPOSE(c)
		:: else
		fi
	:: else
	fi;
	lz = 0
}

/* hand_over (216-260) to worker i. */
inline HAND_OVER()
{
	held = c;
	W(cur = drops[i]);                           /* line 220 */
	do
	:: cur == CLOSED -> DISPOSE(held); break     /* 224-227 */
	:: cur != CLOSED ->
		if
		:: cur != 0 ->
			W(lz = lazy[i]);             /* 230 */
			if
			:: lz != held -> DISPOSE(held); break
			:: else
			fi
		:: else
		fi;
		W(if                                 /* the CAS, 241 */
		  :: drops[i] == cur -> drops[i] = held; ok = 1
		  :: else -> cur = drops[i]; ok = 0
		  fi);
		if
		:: !ok -> skip
		:: ok && cur == 0 ->
			if
			:: held == c -> TAKE_BACK()
			:: else
			fi;
			break
		:: ok && cur != 0 ->
			W(lz = lazy[i]);             /* 250 */
			if
			:: lz != cur -> DISPOSE(cur); break
			:: else -> tmp = cur; cur = held; held = tmp
			fi
		fi
	od;
	held = 0; cur = 0; ok = 0; lz = 0; tmp = 0
}

/* hazard_users_zero (285-311): the last user, after teardown, before its count drop. */
inline USERS_ZERO()
{
	i = 0;
	do
	:: i < NW ->
		if
		:: (mask[c] & BIT(i)) ->             /* lmm__mask_for_each */
			W(lz = lazy[i]);             /* convert_worker, 271 */
			if
			:: lz == c ->
				if
				:: !grabbed -> W(count[c] = count[c] + NW); grabbed = 1; spare = NW /* 278 */
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
	if
	:: spare > 0 -> W(count[c] = count[c] - spare) /* 303 */
	:: else
	fi;
	spare = 0; grabbed = 0;
	/* 309-310: the stolen references, any of which may be a final drop */
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

/* drain (45-58). */
inline DRAIN()
{
	W(v = drops[me]; if :: v != 0 && v != CLOSED -> drops[me] = 0 :: else fi);
	if
	:: v != 0 && v != CLOSED -> DROP(v)
	:: else
	fi;
	v = 0
}

/* hazard_lazy_enter (60-91) on x. */
inline LAZY_ENTER(x)
{
	W(lazy[me] = x);                             /* 70, then the light fence (77) */
#ifdef BUG_COUNTONLY
	skip
#else
	W(u = users[x]);                             /* 79 */
	if
	:: u > 0 -> skip
	:: else ->
		W(count[x]++);                       /* 88 */
		W(lazy[me] = x + OWNED)              /* 90 */
	fi;
	u = 0
#endif
}

/* hazard_lazy_resume (93-107) on x. */
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

/* hazard_lazy_release (109-121) on x, after the install published active. */
inline LAZY_RELEASE(x)
{
	W(lz = lazy[me]; lazy[me] = 0);
	if
	:: lz >= OWNED -> lz = 0; DROP(x)
	:: else -> lz = 0
	fi;
	DRAIN()
}

/* switch.c install() (20-39) up to the store of active, one step; then lazy_release. */
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

/* lmm_switch (switch.c 58-92). */
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

/* lmm__unlazy (switch.c 95-105). */
inline UNLAZY()
{
	if
	:: current[me] == 0 && act[me] != INIT -> INSTALL(INIT, 1)
	:: else
	fi
}

proctype Worker(byte me)
{
	byte c, i, k, prev, lz, cur, held, tmp, spare, v, u, ref;
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
	/* do_offline (worker.c): unlazy, then hazard_worker_offline (123-136) */
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
	byte me = MAIN, c, i, prev, lz, cur, held, tmp, spare, v;
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
