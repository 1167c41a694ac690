/* Seeded bug BUG_PENDING_PER_CTX: see the header of shootdown.pml. tests/models/check fails unless spin finds it.
 * With the code's switch a per-context pending flag loses no work: every
 * critical section of a shootdown worker ends with it not lazy (switch_slow
 * installs next or takes the lazy hit on init, lmm__unlazy installs init),
 * so BUG_PENDING_PER_CTX alone verifies (~12.8 M states, no error).
 * LAZY_BRACKETED models a switch with both lazy transitions in the bracket:
 * a section that leaves the worker lazy, where the per-context flag loses a
 * worker that then never moves. */
#define BUG_PENDING_PER_CTX
#define LAZY_BRACKETED
#include "shootdown.pml"
