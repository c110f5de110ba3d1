#ifndef GUTS_CSODIUM_SHIM_H
#define GUTS_CSODIUM_SHIM_H
#include <sodium.h>
#endif
