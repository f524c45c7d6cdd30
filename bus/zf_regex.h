/*  zf_regex.h — regular expressions from outside input, compiled without a blow-up.

    Hostname regexes come from INI files, the manager's API and its database; proxy rules and
    the hijack pattern from INI files. glibc's regcomp builds a repetition by copying what it
    repeats ('x+' becomes 'xx*', 'x{3}' three copies of x), so a stacked or nested repetition
    grows exponentially: "u-" followed by twenty '+' takes 700 MB and 2.5 s to compile, and
    the manager's API fuzzer ran a daemon out of memory with one such hostname. Every pattern
    from outside goes through zf_regex_compile, which refuses, with a reason, before regcomp
    sees them: a repetition of a repetition, repetitions nested deeper than
    ZF_REGEX_MAX_NESTING, and patterns whose estimated size with repetitions expanded is over
    ZF_REGEX_MAX_EXPANSION. */
#ifndef ZF_REGEX_H_INCLUDED
#define ZF_REGEX_H_INCLUDED

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

//  The largest pattern accepted, in bytes.
#define ZF_REGEX_MAX_LENGTH 1024

//  The largest estimated expansion accepted, in pattern atoms after repetitions are copied (a
//  group counts two more than what is in it: regcomp opens and closes it). A hostname regex
//  such as ^[a-z0-9-]{1,63}\.example\.com$ is about 80. Measured here: patterns just under 1024
//  made to be slow, such as "(()*){170}" or "((j*)*){100}", compile in under 0.05 s and 4 MB; at
//  4096, "((j*)*){2000}" took 16 s.
#define ZF_REGEX_MAX_EXPANSION 1024

//  The deepest nesting of repetitions accepted: "((a?)+)*" is 3. Measured here: "^((((u?)+)+)+)+"
//  (5) compiles in 0.01 s, "^(((((u?)+)+)+)+)+" (6) did not in 10 s. A repetition applied
//  directly to another ("a?+", undefined in POSIX) is refused whatever the depth:
//  "^u?+++++" took more than 10 s though it is only 64 atoms.
#define ZF_REGEX_MAX_NESTING 3

//  Compiles pattern with regcomp (REG_EXTENDED | REG_NOSUB | extra_flags). On success returns
//  true and regex must be freed with regfree; on failure returns false with the reason in
//  why ("bad regular expression: …", or why it is too large; the caller names the pattern)
//  and nothing to free.
bool zf_regex_compile (regex_t *regex, const char *pattern, int extra_flags, char *why,
                       size_t why_size);

//  Whether pattern compiles under zf_regex_compile; why as there.
bool zf_regex_valid (const char *pattern, char *why, size_t why_size);

void zf_regex_test (bool verbose);

#endif
