/* Seeded bug BUG_OFFLINE_EARLY: see the header of shootdown.pml. tests/models/check fails unless spin finds it. */
#define BUG_OFFLINE_EARLY
#include "shootdown.pml"
