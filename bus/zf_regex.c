/*  zf_regex.c — regular expressions from outside input (see zf_regex.h). */
#include "zf_regex.h"
#include "zf_prelude.h"
#include <stdio.h>
#include <string.h>

//  Counts saturate here, one past the largest accepted, so nothing overflows.
#define S_CAP (ZF_REGEX_MAX_EXPANSION + 1)

//  How deep groups may nest; deeper patterns are refused as too large.
#define S_MAX_DEPTH 64

static size_t s_add (size_t a, size_t b)
{
    return a + b >= S_CAP ? S_CAP : a + b;
}

static size_t s_mul (size_t a, size_t b)
{
    if (b != 0 && a > S_CAP / b)
        return S_CAP;
    return a * b >= S_CAP ? S_CAP : a * b;
}

//  Past a bracket expression that starts at p ('['): "[]a]", "[^]a]", "[[:alpha:]-]".
static const char *s_skip_bracket (const char *p)
{
    const char *q = p + 1;
    if (*q == '^')
        q++;
    if (*q == ']')
        q++;
    while (*q && *q != ']') {
        if (*q == '[' && (q[1] == ':' || q[1] == '=' || q[1] == '.')) {
            char close[3] = {q[1], ']', 0};
            const char *end = strstr (q + 2, close);
            q = end ? end + 2 : q + 1;
        } else
            q++;
    }
    return *q ? q + 1 : q;
}

//  Parses an interval "{n}", "{n,}", "{n,m}" or "{,m}" at *p; on success moves *p past it and
//  sets *copies to how many copies of the repeated atom regcomp makes.
static bool s_interval (const char **p, size_t *copies)
{
    const char *q = *p + 1;
    size_t low = 0, high = 0;
    bool open_ended = false, any = false;
    while (*q >= '0' && *q <= '9') {
        low = s_add (s_mul (low, 10), (size_t) (*q++ - '0'));
        any = true;
    }
    high = low;
    if (*q == ',') {
        q++;
        open_ended = !(*q >= '0' && *q <= '9');
        high = 0;
        while (*q >= '0' && *q <= '9') {
            high = s_add (s_mul (high, 10), (size_t) (*q++ - '0'));
            any = true;
        }
    }
    if (*q != '}' || !any)
        return false;
    *p = q + 1;
    size_t most = high > low ? high : low;
    *copies = s_add (most ? most : 1, open_ended ? 1 : 0);
    return true;
}

//  What refuses a pattern before regcomp sees it: its size once repetitions are copied, how
//  deep repetitions nest, and whether one repetition follows another directly.
typedef struct {
    size_t expansion;
    int nesting;  //  repetitions inside repeated groups: "(a+)*" is 2
    bool stacked; //  a repetition of a repetition: "a+*", "a?+", "a{2}{3}"
} s_shape_t;

static int s_max (int a, int b)
{
    return a > b ? a : b;
}

static s_shape_t s_shape (const char *pattern)
{
    s_shape_t shape = {0};
    size_t totals[S_MAX_DEPTH + 1] = {0}; //  the expansion of each open group so far
    int nestings[S_MAX_DEPTH + 1] = {0};  //  the deepest repetition in each open group so far
    int depth = 0;
    size_t last = 0;       //  the atom a repetition would copy, as expanded so far; 0: none
    int last_nesting = 0;  //  how deep the repetitions in that atom go
    bool repeated = false; //  the last thing read was a repetition
    const char *p = pattern;
    while (*p) {
        if (*p == '(' || *p == '|') {
            //  A group opens, or an alternative starts (alternatives are all in the compiled
            //  pattern: they add up); either way nothing is there to repeat yet.
            if (*p++ == '(') {
                if (depth == S_MAX_DEPTH) {
                    shape.expansion = S_CAP;
                    return shape;
                }
                depth++;
                totals[depth] = 0;
                nestings[depth] = 0;
            }
            last = 0;
            repeated = false;
            continue;
        }
        size_t copies = 0;
        if (*p == '*' || *p == '+' || *p == '?') {
            copies = 2; //  '+' is a copy and a star; '*' and '?' a node around the atom
            p++;
        }
        if (copies || (*p == '{' && s_interval (&p, &copies))) {
            if (last) {
                shape.stacked |= repeated;
                size_t grown = s_mul (last, copies);
                totals[depth] =
                    totals[depth] >= S_CAP ? S_CAP : s_add (totals[depth] - last, grown);
                last = grown;
                last_nesting++;
                nestings[depth] = s_max (nestings[depth], last_nesting);
            }
            repeated = true;
            continue;
        }
        size_t atom = 1;
        int atom_nesting = 0;
        if (*p == '\\')
            p += p[1] ? 2 : 1;
        else if (*p == '[')
            p = s_skip_bracket (p);
        else if (*p == ')' && depth > 0) {
            atom = s_add (totals[depth], 2);
            atom_nesting = nestings[depth--];
            p++;
        } else
            p++;
        totals[depth] = s_add (totals[depth], atom);
        nestings[depth] = s_max (nestings[depth], atom_nesting);
        last = atom;
        last_nesting = atom_nesting;
        repeated = false;
    }
    //  Unclosed groups: regcomp refuses them, the sums are only estimates.
    for (int level = 0; level <= depth; level++) {
        shape.expansion = s_add (shape.expansion, totals[level]);
        shape.nesting = s_max (shape.nesting, nestings[level]);
    }
    return shape;
}

bool zf_regex_compile (regex_t *regex, const char *pattern, int extra_flags, char *why,
                       size_t why_size)
{
    size_t length = strlen (pattern);
    if (length > ZF_REGEX_MAX_LENGTH) {
        snprintf (why, why_size, "regular expression longer than %d bytes", ZF_REGEX_MAX_LENGTH);
        return false;
    }
    s_shape_t shape = s_shape (pattern);
    if (shape.stacked) {
        snprintf (why, why_size,
                  "regular expression repeats a repetition ('a+*', 'a?+', 'a{2}{3}'): POSIX "
                  "leaves that undefined; write one repetition, or a group around the first");
        return false;
    }
    if (shape.nesting > ZF_REGEX_MAX_NESTING) {
        snprintf (why, why_size,
                  "regular expression nests repetitions more than %d deep (such as "
                  "'(((a?)+)+)+'): regcomp's time grows exponentially with the depth",
                  ZF_REGEX_MAX_NESTING);
        return false;
    }
    if (shape.expansion > ZF_REGEX_MAX_EXPANSION) {
        snprintf (why, why_size,
                  "regular expression too large once its repetitions are expanded (more than %d "
                  "atoms; nested repetitions such as '(a{100}){100}' multiply)",
                  ZF_REGEX_MAX_EXPANSION);
        return false;
    }
    int rc = regcomp (regex, pattern, REG_EXTENDED | REG_NOSUB | extra_flags);
    if (rc != 0) {
        char reason[128];
        regerror (rc, regex, reason, sizeof reason);
        snprintf (why, why_size, "bad regular expression: %s", reason);
        return false;
    }
    return true;
}

bool zf_regex_valid (const char *pattern, char *why, size_t why_size)
{
    regex_t regex;
    if (!zf_regex_compile (&regex, pattern, 0, why, why_size))
        return false;
    regfree (&regex);
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest

void zf_regex_test (bool verbose)
{
    if (verbose)
        printf (" * zf_regex: ");
    char why[512];
    //  What hostname and proxy rules look like stays small and compiles.
    ZF_ASSERT (s_shape ("^edge-[0-9]+$").expansion < 16);
    ZF_ASSERT (s_shape ("^[a-z0-9-]{1,63}\\.example\\.com$").expansion < 100);
    ZF_ASSERT (zf_regex_valid ("^[a-z0-9-]{1,63}\\.example\\.com$", why, sizeof why));
    ZF_ASSERT (zf_regex_valid ("blobs/sha256:[0-9a-f]{64}$", why, sizeof why));
    ZF_ASSERT (zf_regex_valid ("^(edge|core)-[0-9]{1,3}(\\.dc[12])?$", why, sizeof why));
    ZF_ASSERT (zf_regex_valid ("[])(+]+x", why, sizeof why));
    ZF_ASSERT (s_shape ("[])(+]+x").expansion == 3);
    ZF_ASSERT (s_shape ("[[:alpha:]]]").expansion == 2);

    //  Counts: a repetition copies its atom, a group counts what is in it.
    ZF_ASSERT (s_shape ("abc").expansion == 3);
    ZF_ASSERT (s_shape ("a{10}").expansion == 10);
    ZF_ASSERT (s_shape ("a{2,}").expansion == 3);
    ZF_ASSERT (s_shape ("(ab){3}").expansion == 12);
    ZF_ASSERT (s_shape ("a|b|c").expansion == 3);
    ZF_ASSERT (s_shape ("a{x}").expansion == 4); //  not an interval: four characters

    //  What blew up regcomp: stacked and nested repetitions, refused with a reason.
    char stacked[200] = "^u-";
    memset (stacked + 3, '+', 120);
    ZF_ASSERT (!zf_regex_valid (stacked, why, sizeof why));
    ZF_ASSERT (strstr (why, "repeats a repetition"));
    ZF_ASSERT (!zf_regex_valid ("^u?+++++++^ed?????????$", why, sizeof why)); //  hung regcomp
    ZF_ASSERT (!zf_regex_valid ("a{2}{3}", why, sizeof why));
    //  Nesting: three deep compiles, deeper is refused (regcomp's time grows with it).
    ZF_ASSERT (zf_regex_valid ("^((a?)+)*$", why, sizeof why));
    ZF_ASSERT (zf_regex_valid ("^[a-z0-9-]{1,63}(\\.[a-z0-9-]{1,63})*$", why, sizeof why));
    ZF_ASSERT (!zf_regex_valid ("^(((((u?)+)+)+)+)+", why, sizeof why));
    ZF_ASSERT (strstr (why, "nests repetitions"));
    ZF_ASSERT (!zf_regex_valid ("((a{100}){100}){10}", why, sizeof why));
    ZF_ASSERT (strstr (why, "too large"));
    ZF_ASSERT (!zf_regex_valid ("j**+++++++++", why, sizeof why));
    ZF_ASSERT (!zf_regex_valid ("(()*){340}", why, sizeof why));
    ZF_ASSERT (!zf_regex_valid ("(((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
                                "((((((((((x)))))))))))))))))))))))))))))))))))))))))))))))"
                                "))))))))))))))))))))",
                                why, sizeof why));
    ZF_ASSERT (!zf_regex_valid ("a{99999999999999999999}", why, sizeof why));

    //  regcomp's own refusals carry its reason.
    ZF_ASSERT (!zf_regex_valid ("edge-(", why, sizeof why));
    ZF_ASSERT (strstr (why, "bad regular expression"));
    char longest[ZF_REGEX_MAX_LENGTH + 2];
    memset (longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    ZF_ASSERT (!zf_regex_valid (longest, why, sizeof why));
    ZF_ASSERT (strstr (why, "longer than"));

    if (verbose)
        printf ("OK\n");
}
