/*  zf_search.c — which cluster a joining host belongs to, by its scopes.

    The weights are Dragonfly's manager's (REFERENCE.md): a host in one of the cluster's CIDRs
    scores 0.3, a name matching one of its hostname regexes 0.3, its IDC among the cluster's
    (a '|'-separated list) 0.25, its location sharing a prefix with the cluster's 0.14 times
    the share of matching elements (of at most 5, '|'-separated, widest first), and the default
    cluster 0.01, so a host that matches nothing lands in the default one. */
#include "zf_manager_input.h"
#include "zf_manager_store.h"
#include "zf_regex.h"

#define S_WEIGHT_CIDR     0.30
#define S_WEIGHT_HOSTNAME 0.30
#define S_WEIGHT_IDC      0.25
#define S_WEIGHT_LOCATION 0.14
#define S_WEIGHT_DEFAULT  0.01
#define S_LOCATION_DEPTH  5

//  Scores of the JSON-array scope columns: 1 when a string of the array matches the host.
typedef bool (s_match_fn) (const char *pattern, const void *host);

static double s_any_match (const char *patterns_json, s_match_fn *match, const void *host)
{
    json_t *patterns = json_loads (patterns_json ? patterns_json : "[]", 0, NULL);
    double score = 0;
    size_t index;
    json_t *value;
    json_array_foreach (patterns, index, value)
    {
        if (json_is_string (value) && match (json_string_value (value), host))
            score = 1;
    }
    json_decref (patterns);
    return score;
}

typedef struct {
    int family;
    uint8_t bytes[16];
} s_address_t;

static bool s_in_cidr (const char *cidr, const void *host)
{
    const s_address_t *address = host;
    zf_network_t network;
    return zf_search_parse_cidr (cidr, &network)
           && zf_search_in_network (&network, address->family, address->bytes);
}

static double s_cidr_score (const char *cidrs_json, const char *address)
{
    s_address_t parsed;
    if (!address || !zf_search_parse_address (address, &parsed.family, parsed.bytes))
        return 0;
    return s_any_match (cidrs_json, s_in_cidr, &parsed);
}

//  A regex that does not compile matches nothing.
static bool s_name_matches (const char *regex, const void *host)
{
    regex_t compiled;
    char why[256];
    if (!zf_regex_compile (&compiled, regex, 0, why, sizeof why))
        return false;
    bool matches = regexec (&compiled, host, 0, NULL, 0) == 0;
    regfree (&compiled);
    return matches;
}

static double s_hostname_score (const char *regexes_json, const char *name)
{
    if (!name || !*name)
        return 0;
    return s_any_match (regexes_json, s_name_matches, name);
}

//  The idc is one of the '|'-separated cluster IDCs.
static double s_idc_score (const char *cluster_idcs, const char *idc)
{
    if (!cluster_idcs || !*cluster_idcs || !idc || !*idc)
        return 0;
    size_t len = strlen (idc);
    for (const char *cursor = cluster_idcs; *cursor;) {
        size_t element = strcspn (cursor, "|");
        if (element == len && memcmp (cursor, idc, len) == 0)
            return 1;
        cursor += element;
        if (*cursor == '|')
            cursor++;
    }
    return 0;
}

//  Matching elements from the start, over the depth compared.
static double s_location_score (const char *cluster_location, const char *location)
{
    if (!cluster_location || !*cluster_location || !location || !*location)
        return 0;
    const char *a = cluster_location, *b = location;
    int matched = 0;
    while (*a && *b && matched < S_LOCATION_DEPTH) {
        size_t len_a = strcspn (a, "|"), len_b = strcspn (b, "|");
        if (len_a != len_b || memcmp (a, b, len_a) != 0)
            break;
        matched++;
        a += len_a;
        b += len_b;
        if (*a == '|')
            a++;
        if (*b == '|')
            b++;
    }
    return (double) matched / S_LOCATION_DEPTH;
}

int64_t zf_search_cluster (const zf_db_result_t *clusters, const zf_search_host_t *host)
{
    int id_column = zf_db_result_column (clusters, "id");
    int default_column = zf_db_result_column (clusters, "is_default");
    int idc_column = zf_db_result_column (clusters, "scope_idc");
    int location_column = zf_db_result_column (clusters, "scope_location");
    int cidrs_column = zf_db_result_column (clusters, "scope_cidrs");
    int hostnames_column = zf_db_result_column (clusters, "scope_hostnames");
    ZF_ASSERT (id_column >= 0 && default_column >= 0 && idc_column >= 0 && location_column >= 0
               && cidrs_column >= 0 && hostnames_column >= 0);
    int64_t best_id = 0;
    double best_score = -1;
    for (size_t row = 0; row < zf_db_result_rows (clusters); row++) {
        double score =
            S_WEIGHT_CIDR
                * s_cidr_score (zf_db_result_text (clusters, row, (size_t) cidrs_column),
                                host->address)
            + S_WEIGHT_HOSTNAME
                  * s_hostname_score (zf_db_result_text (clusters, row, (size_t) hostnames_column),
                                      host->name)
            + S_WEIGHT_IDC
                  * s_idc_score (zf_db_result_text (clusters, row, (size_t) idc_column), host->idc)
            + S_WEIGHT_LOCATION
                  * s_location_score (zf_db_result_text (clusters, row, (size_t) location_column),
                                      host->location)
            + S_WEIGHT_DEFAULT
                  * (zf_db_result_int (clusters, row, (size_t) default_column, 0) ? 1 : 0);
        int64_t id = zf_db_result_int (clusters, row, (size_t) id_column, 0);
        //  A cluster that matches nothing at all (score 0) is not a candidate: with no default
        //  cluster such a host has nowhere to go.
        if (score > 0
            && (score > best_score + 1e-9 || (score > best_score - 1e-9 && id < best_id))) {
            best_score = score;
            best_id = id;
        }
    }
    return best_id;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: clusters as the store returns them, hosts of each kind.

static void s_test_add (zf_db_result_t *clusters, const char *id, const char *is_default,
                        const char *idc, const char *location, const char *cidrs,
                        const char *hostnames)
{
    const char *values[] = {id, is_default, idc, location, cidrs, hostnames};
    zf_db_result_add_row (clusters);
    for (size_t index = 0; index < ZF_ARRAY_LEN (values); index++)
        zf_db_result_set (clusters, index, values[index], strlen (values[index]));
}

void zf_search_test (bool verbose)
{
    (void) verbose;
    ZF_ASSERT (zf_search_cidr_valid ("10.0.0.0/8") && zf_search_cidr_valid ("fd00::/8"));
    ZF_ASSERT (!zf_search_cidr_valid ("10.0.0/8") && !zf_search_cidr_valid ("10.0.0.0/33")
               && !zf_search_cidr_valid ("10.0.0.0") && !zf_search_cidr_valid ("/8")
               && !zf_search_cidr_valid ("10.0.0.0/x"));

    zf_db_result_t *clusters = zf_db_result_new (6);
    const char *names[] = {"id",          "is_default",     "scope_idc", "scope_location",
                           "scope_cidrs", "scope_hostnames"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (names); index++)
        zf_db_result_set_name (clusters, index, names[index]);
    s_test_add (clusters, "1", "1", "", "", "[]", "[]");
    s_test_add (clusters, "2", "0", "", "", "[\"10.1.0.0/16\", \"fd00:1::/32\"]", "[]");
    s_test_add (clusters, "3", "0", "", "", "[]", "[\"^gpu-[0-9]+$\"]");
    s_test_add (clusters, "4", "0", "fra1|fra2", "eu|de", "[]", "[]");
    s_test_add (clusters, "5", "0", "", "eu|de|fra|rack12", "[]", "[]");

    zf_search_host_t host = {.address = "192.168.1.1", .name = "edge-1"};
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 1); //  nothing matches: default
    host.address = "10.1.2.3";
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 2);
    host.address = "fd00:1::5";
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 2);
    host = (zf_search_host_t){.address = "10.9.9.9", .name = "gpu-12"};
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 3);
    host.name = "gpu-x";
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 1);
    //  IDC (0.25 + 0.14 * 2/5) beats the deeper location alone (0.14 * 4/5).
    host = (zf_search_host_t){.address = "10.9.9.9", .idc = "fra2", .location = "eu|de|fra|rack12"};
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 4);
    host.idc = "ams1";
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 5);
    host.location = "us|east";
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 1);
    //  CIDR (0.3) beats IDC (0.25).
    host = (zf_search_host_t){.address = "10.1.0.1", .idc = "fra1"};
    ZF_ASSERT (zf_search_cluster (clusters, &host) == 2);
    zf_db_result_destroy (&clusters);
}
