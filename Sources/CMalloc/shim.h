// glibc's allocator tuning (malloc_trim, mallopt), which the Glibc module does not export.
#include <malloc.h>
