/*  zfly_main.c — the zfly command line.

    zfly -c FILE [--set SECTION.KEY=VALUE]…   run the actors FILE names
    zfly check -c FILE [--set …]              validate the configuration, start nothing
    zfly keygen PATH                          write a CURVE keypair: PATH.key and PATH.pub
    zfly manager init -c FILE                 prepare the manager's database, print an admin token
    zfly config-reference                     print every section and key with its default */
#include "zf_config.h"
#include "zf_daemon.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_sections.h"
#include "manager/zf_manager.h"
#include <getopt.h>
#include <malloc.h>
#include <sys/stat.h>

#define ZF_VERSION    "0.1.0"
#define MAX_OVERRIDES 256

static void s_usage (FILE *out)
{
    fprintf (out, "usage: zfly -c FILE [--set SECTION.KEY=VALUE]...\n"
                  "       zfly check -c FILE [--set SECTION.KEY=VALUE]...\n"
                  "       zfly keygen PATH\n"
                  "       zfly manager init -c FILE\n"
                  "       zfly config-reference\n"
                  "\n"
                  "Runs the zfly actors that the INI file FILE names, each with its own section,\n"
                  "until SIGTERM or SIGINT.\n"
                  "\n"
                  "  -c, --config FILE        configuration file (see deploy/*.ini)\n"
                  "  -s, --set S.K=V          override key K of section S (repeatable)\n"
                  "  -h, --help               this text\n"
                  "  -V, --version            print the version\n"
                  "\n"
                  "Commands:\n"
                  "  check                    load FILE and report the first error, start nothing\n"
                  "  keygen PATH              write PATH.key (secret, mode 0600) and PATH.pub;\n"
                  "                           put PATH.pub in other nodes' [bus] allow directory\n"
                  "  config-reference         print every section and key with default and help\n"
                  "  manager init             apply the [manager] database's migrations, make the\n"
                  "                           default cluster and user admin, print a new admin\n"
                  "                           token (the only way to get the first one)\n"
                  "\n"
                  "Actors:\n");
    for (size_t index = 0; index < zf_actor_kind_count; index++)
        fprintf (out, "  [%s]%*s%s\n", zf_actor_kinds[index].name,
                 (int) (23 - strlen (zf_actor_kinds[index].name)), "",
                 zf_actor_kinds[index].summary);
}

static int s_keygen (const char *path)
{
    zcert_t *cert = zcert_new ();
    ZF_ASSERT (cert);
    char *secret_path = zf_asprintf ("%s.key", path);
    char *public_path = zf_asprintf ("%s.pub", path);
    zcert_set_meta (cert, "created-by", "zfly keygen");
    mode_t old_mask = umask (077); //  the secret file must never be readable by others
    int rc = zcert_save_secret (cert, secret_path);
    umask (old_mask);
    if (rc == 0)
        rc = zcert_save_public (cert, public_path);
    if (rc != 0)
        fprintf (stderr, "zfly: keygen: cannot write %s / %s: %s\n", secret_path, public_path,
                 strerror (errno));
    else
        printf ("secret key: %s (set [bus] cert = %s)\npublic key: %s (copy to other nodes' "
                "allow directory)\npublic key z85: %s\n",
                secret_path, secret_path, public_path, zcert_public_txt (cert));
    zcert_destroy (&cert);
    zf_free (secret_path);
    zf_free (public_path);
    return rc == 0 ? 0 : 1;
}

int main (int argc, char *argv[])
{
    //  Pieces are buffers of megabytes, allocated and freed again and again (storage reads,
    //  libzmq's receive buffers). On mmap every one costs a page fault per 4 KiB, the largest
    //  cost of a swarm on a VM (docs/benchmarks.md "Swarm"); from the heap a freed buffer is
    //  reused as it is. The supervisor gives the heap's free pages back to the system every few
    //  seconds (zf_daemon.c), so a daemon that served a burst does not keep what it no longer
    //  uses. glibc's largest fixed threshold: bigger pieces still come from mmap.
    mallopt (M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    //  And free() itself must not give them back: with a fixed mmap threshold glibc trims a
    //  heap whose free top passes 128 KiB, at every free of a piece on top (madvise in the
    //  threads' arenas). libzmq's I/O thread (CURVE's buffers, receive buffers) and storage's
    //  reads then faulted every page in again: half of a parent's CPU on loopback
    //  (docs/benchmarks.md "Datacenter speed"). The supervisor's trim when idle still applies.
    mallopt (M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    //  One arena for every thread, so that the supervisor's malloc_trim gives all of it back:
    //  glibc trims the top of a thread's own arena only in free(), by the threshold above,
    //  never in malloc_trim (a parent kept 34 MiB of its last download's buffers when idle).
    //  The threads allocate a few times per piece frame, so they do not wait on each other.
    mallopt (M_ARENA_MAX, 1);
    const char *config_path = NULL;
    const char *overrides[MAX_OVERRIDES];
    size_t override_count = 0;
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long (argc, argv, "c:s:hV", options, NULL)) != -1) {
        switch (option) {
        case 'c': config_path = optarg; break;
        case 's':
            if (override_count == MAX_OVERRIDES) {
                fprintf (stderr, "zfly: more than %d --set options\n", MAX_OVERRIDES);
                return 2;
            }
            overrides[override_count++] = optarg;
            break;
        case 'h': s_usage (stdout); return 0;
        case 'V': printf ("zfly %s\n", ZF_VERSION); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    const char *command = optind < argc ? argv[optind] : "run";
    size_t section_count;
    const zf_config_section_t *const *sections = zf_all_sections (&section_count);

    if (streq (command, "keygen")) {
        if (optind + 2 != argc) {
            fprintf (stderr, "usage: zfly keygen PATH   (writes PATH.key and PATH.pub)\n");
            return 2;
        }
        return s_keygen (argv[optind + 1]);
    }
    if (streq (command, "config-reference")) {
        zf_config_write_reference (sections, section_count, stdout);
        return 0;
    }
    bool manager_init = streq (command, "manager");
    if (manager_init && !(optind + 2 == argc && streq (argv[optind + 1], "init"))) {
        fprintf (stderr, "usage: zfly manager init -c FILE\n");
        return 2;
    }
    if (!manager_init && !streq (command, "run") && !streq (command, "check")) {
        fprintf (stderr, "zfly: unknown command '%s' (try zfly --help)\n", command);
        return 2;
    }
    if (!manager_init && optind + (streq (command, "run") ? 0 : 1) != argc) {
        fprintf (stderr, "zfly: unexpected argument '%s' (try zfly --help)\n", argv[argc - 1]);
        return 2;
    }
    if (!config_path) {
        fprintf (stderr, "zfly: no configuration: use -c FILE (samples in deploy/)\n");
        return 2;
    }
    zf_error_t err;
    zf_config_t *config =
        zf_config_load (sections, section_count, config_path, overrides, override_count, &err);
    if (!config) {
        fprintf (stderr, "zfly: %s\n", err.message);
        return 2;
    }
    size_t warning_count;
    const char *const *warnings = zf_config_warnings (config, &warning_count);
    for (size_t index = 0; index < warning_count; index++)
        if (streq (command, "check"))
            fprintf (stderr, "zfly: warning: %s\n", warnings[index]);
        else
            zf_warning ("zfly", "%s", warnings[index]);
    int exit_code = 0;
    if (manager_init) {
        if (!zf_config_has_section (config, "manager")) {
            fprintf (stderr, "zfly: manager init: %s has no [manager] section\n", config_path);
            exit_code = 2;
        } else
            exit_code = zf_manager_init_command (zf_config_section (config, "manager"), stdout);
    } else if (streq (command, "check"))
        printf ("%s: configuration is valid\n", config_path);
    else
        exit_code = zf_daemon_run (config);
    zf_config_destroy (&config);
    zf_metrics_shutdown ();
    return exit_code;
}
