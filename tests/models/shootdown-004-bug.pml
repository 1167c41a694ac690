/* Seeded bug BUG_004: see the header of shootdown.pml. tests/models/check fails unless spin finds it.
 * With the switch since e507a01 the seed cannot manifest: every critical
 * section of a shootdown worker ends with it not lazy (switch_slow installs
 * next or takes the lazy hit on init, lmm__unlazy installs init), so a lost
 * pending flag loses no work (BUG_004 alone verifies: ~12.8 M states, no
 * error). LAZY_BRACKETED models lmm_switch as it was before, with both lazy
 * transitions in the bracket: a section that leaves the worker lazy, where
 * the per-context flag loses a worker that then never moves. */
#define BUG_004
#define LAZY_BRACKETED
#include "shootdown.pml"
