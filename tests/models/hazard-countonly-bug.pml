/* Seeded bug BUG_COUNTONLY: see the header of hazard.pml. tests/models/check fails unless spin finds it. */
#define BUG_COUNTONLY
#include "hazard.pml"
