/*  selftest.c — runs one class selftest by name, so each is its own CTest test.

    Usage: zf_selftest NAME [-v]     (zf_selftest --list prints the names) */
#include "zf_prelude.h"

//  First pass: prototypes (each class header declares its own as well).
#define ZF_SELFTEST(name, fn) void fn (bool verbose);
#include "zf_selftests.inc"
#undef ZF_SELFTEST

typedef struct {
    const char *name;
    void (*run) (bool verbose);
} selftest_t;

static const selftest_t s_selftests[] = {
#define ZF_SELFTEST(name, fn) {name, fn},
#include "zf_selftests.inc"
#undef ZF_SELFTEST
};

int main (int argc, char *argv[])
{
    if (argc < 2) {
        fprintf (stderr, "usage: zf_selftest NAME [-v] | --list\n");
        return 2;
    }
    bool verbose = argc > 2 && strcmp (argv[2], "-v") == 0;
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_selftests); index++) {
        if (strcmp (argv[1], "--list") == 0)
            printf ("%s\n", s_selftests[index].name);
        else if (strcmp (argv[1], s_selftests[index].name) == 0) {
            printf ("selftest %s: running\n", argv[1]);
            s_selftests[index].run (verbose);
            printf ("selftest %s: OK\n", argv[1]);
            return 0;
        }
    }
    if (strcmp (argv[1], "--list") == 0)
        return 0;
    fprintf (stderr, "zf_selftest: no selftest named '%s'\n", argv[1]);
    return 2;
}
