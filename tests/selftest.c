/*  selftest.c — runs one class selftest by name, so each is its own CTest test.

    Usage: zf_selftest NAME [-v]     (zf_selftest --list prints the names)
           zf_selftest --expect NAME...
    --expect exits 1 unless the names given are exactly the compiled-in selftests, in order:
    tests/CMakeLists.txt reads the names from zf_selftests.inc with a pattern, and this check
    (CTest unit.selftest_list) fails when a line the compiler sees is one the pattern missed. */
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

//  Compares the CTest list (argv) with the compiled-in one; prints every difference.
static int s_expect (int argc, char *argv[])
{
    size_t count = ZF_ARRAY_LEN (s_selftests);
    bool same = (size_t) argc == count;
    for (size_t index = 0; index < count || index < (size_t) argc; index++) {
        const char *compiled = index < count ? s_selftests[index].name : "(none)";
        const char *listed = index < (size_t) argc ? argv[index] : "(none)";
        if (strcmp (compiled, listed) != 0) {
            fprintf (stderr, "zf_selftest: entry %zu: zf_selftests.inc has '%s', CTest has '%s'\n",
                     index + 1, compiled, listed);
            same = false;
        }
    }
    printf ("zf_selftest: %zu selftests compiled in, %d in CTest: %s\n", count, argc,
            same ? "same" : "DIFFERENT");
    return same ? 0 : 1;
}

int main (int argc, char *argv[])
{
    if (argc >= 2 && strcmp (argv[1], "--expect") == 0)
        return s_expect (argc - 2, argv + 2);
    if (argc < 2) {
        fprintf (stderr, "usage: zf_selftest NAME [-v] | --list | --expect NAME...\n");
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
