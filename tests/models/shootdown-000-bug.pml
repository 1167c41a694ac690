/* Seeded bug BUG_000: see the header of shootdown.pml. tests/models/check fails unless spin finds it. */
#define BUG_000
#include "shootdown.pml"
