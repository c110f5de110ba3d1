#ifndef GUTS_CZLIB_SHIM_H
#define GUTS_CZLIB_SHIM_H
#include <zlib.h>
#endif
