/*  zf_manager_input.c — request bodies of the manager's API, checked before anything is
    written: types, sizes, CIDRs, regexes, unknown fields. Every error names the field
    ("scopes.cidrs[1]: '10.0.0/8' is not a CIDR"). Pure (jansson and libc only), so the fuzzer
    (tests/fuzz/fuzz_api_json.c) runs it without a database. */
#include "zf_manager_input.h"
#include <arpa/inet.h>
#include "zf_regex.h"

#define S_NAME_MAX   128
#define S_TEXT_MAX   1024
#define S_LIST_MAX   64    //  CIDRs or hostname regexes per cluster
#define S_CONFIG_MAX 65536 //  bytes of client config JSON

bool zf_search_parse_address (const char *text, int *family, uint8_t *bytes)
{
    if (inet_pton (AF_INET, text, bytes) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton (AF_INET6, text, bytes) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

bool zf_search_parse_cidr (const char *cidr, zf_network_t *network)
{
    const char *slash = strchr (cidr, '/');
    if (!slash || slash == cidr || slash - cidr >= INET6_ADDRSTRLEN)
        return false;
    char address[INET6_ADDRSTRLEN];
    memcpy (address, cidr, (size_t) (slash - cidr));
    address[slash - cidr] = '\0';
    if (!zf_search_parse_address (address, &network->family, network->bytes))
        return false;
    const char *digits = slash + 1;
    if (!*digits || strlen (digits) > 3 || strspn (digits, "0123456789") != strlen (digits))
        return false;
    network->prefix = (int) strtol (digits, NULL, 10);
    return network->prefix <= (network->family == AF_INET ? 32 : 128);
}

bool zf_search_cidr_valid (const char *cidr)
{
    zf_network_t network;
    return zf_search_parse_cidr (cidr, &network);
}

bool zf_search_in_network (const zf_network_t *network, int family, const uint8_t *bytes)
{
    if (family != network->family)
        return false;
    int full = network->prefix / 8, rest = network->prefix % 8;
    if (memcmp (bytes, network->bytes, (size_t) full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t) (0xff << (8 - rest));
    return (bytes[full] & mask) == (network->bytes[full] & mask);
}

//  ---------------------------------------------------------------------------------------------
//  Input

static zf_status_t s_string (json_t *value, const char *field, size_t max, bool empty_ok,
                             char **out, zf_error_t *err)
{
    if (!json_is_string (value))
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must be a string", field);
    const char *text = json_string_value (value);
    size_t len = json_string_length (value);
    if (len != strlen (text))
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must not contain NUL", field);
    if (len > max)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: longer than %zu bytes", field, max);
    if (!empty_ok && len == 0)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must not be empty", field);
    zf_free (*out);
    *out = zf_strdup (text);
    return ZF_OK;
}

//  A list of strings, each checked: CIDRs or regexes.
static zf_status_t s_list (json_t *value, const char *field, bool regexes, char **out,
                           zf_error_t *err)
{
    if (!json_is_array (value))
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must be a list of strings", field);
    if (json_array_size (value) > S_LIST_MAX)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: at most %d entries", field, S_LIST_MAX);
    size_t index;
    json_t *item;
    json_array_foreach (value, index, item)
    {
        char where[64];
        snprintf (where, sizeof where, "%s[%zu]", field, index);
        const char *text = json_string_value (item);
        if (!text || json_string_length (item) != strlen (text) || strlen (text) > 256)
            return zf_error_set (err, ZF_E_INVALID, where,
                                 "%s: must be a string of at most 256 bytes", where);
        char why[512] = "";
        if (regexes && !zf_regex_valid (text, why, sizeof why))
            return zf_error_set (err, ZF_E_INVALID, where, "%s: '%s' is not a regex: %s", where,
                                 text, why);
        if (!regexes && !zf_search_cidr_valid (text))
            return zf_error_set (err, ZF_E_INVALID, where,
                                 "%s: '%s' is not a CIDR (like 10.0.0.0/8 or fd00::/8)", where,
                                 text);
    }
    zf_free (*out);
    *out = json_dumps (value, JSON_COMPACT);
    ZF_ASSERT (*out);
    return ZF_OK;
}

static zf_status_t s_scopes (json_t *scopes, zf_cluster_input_t *input, zf_error_t *err)
{
    if (!json_is_object (scopes))
        return zf_error_set (err, ZF_E_INVALID, "scopes", "scopes: must be an object");
    input->has_scopes = true;
    zf_status_t status = ZF_OK;
    const char *key;
    json_t *value;
    json_object_foreach (scopes, key, value)
    {
        if (streq (key, "idc"))
            status = s_string (value, "scopes.idc", S_TEXT_MAX, true, &input->scope_idc, err);
        else if (streq (key, "location"))
            status =
                s_string (value, "scopes.location", S_TEXT_MAX, true, &input->scope_location, err);
        else if (streq (key, "cidrs"))
            status = s_list (value, "scopes.cidrs", false, &input->scope_cidrs, err);
        else if (streq (key, "hostnames"))
            status = s_list (value, "scopes.hostnames", true, &input->scope_hostnames, err);
        else
            status = zf_error_set (err, ZF_E_INVALID, "scopes",
                                   "scopes.%.64s: unknown (known: idc, location, cidrs, "
                                   "hostnames)",
                                   key);
        if (status != ZF_OK)
            return status;
    }
    return ZF_OK;
}

zf_status_t zf_cluster_input_parse (json_t *body, bool create, zf_cluster_input_t *input,
                                    zf_error_t *err)
{
    memset (input, 0, sizeof *input);
    zf_status_t status = ZF_OK;
    const char *key;
    json_t *value;
    json_object_foreach (body, key, value)
    {
        if (streq (key, "name")) {
            status = s_string (value, "name", S_NAME_MAX, false, &input->name, err);
            input->has_name = true;
        } else if (streq (key, "description")) {
            status = s_string (value, "description", S_TEXT_MAX, true, &input->description, err);
            input->has_description = true;
        } else if (streq (key, "is_default")) {
            if (!json_is_boolean (value))
                status = zf_error_set (err, ZF_E_INVALID, "is_default",
                                       "is_default: must be true or false");
            input->is_default = json_is_true (value);
            input->has_default = true;
        } else if (streq (key, "scopes"))
            status = s_scopes (value, input, err);
        else if (streq (key, "client_config")) {
            if (!json_is_object (value))
                status = zf_error_set (err, ZF_E_INVALID, "client_config",
                                       "client_config: must be an object");
            else {
                input->client_config = json_dumps (value, JSON_COMPACT);
                ZF_ASSERT (input->client_config);
                if (strlen (input->client_config) > S_CONFIG_MAX)
                    status = zf_error_set (err, ZF_E_INVALID, "client_config",
                                           "client_config: larger than %d bytes", S_CONFIG_MAX);
                input->has_config = true;
            }
        } else if (streq (key, "id") || streq (key, "members_version") || streq (key, "created_at")
                   || streq (key, "updated_at"))
            ; //  read-only fields a client may send back from a GET: ignored
        else
            status = zf_error_set (err, ZF_E_INVALID, "body",
                                   "%.64s: unknown field (known: name, description, is_default, "
                                   "scopes, client_config)",
                                   key);
        if (status != ZF_OK)
            break;
    }
    if (status == ZF_OK && create && !input->has_name)
        status = zf_error_set (err, ZF_E_MISSING, "name", "name: required");
    if (status != ZF_OK)
        zf_cluster_input_clear (input);
    return status;
}

void zf_cluster_input_clear (zf_cluster_input_t *input)
{
    zf_free (input->name);
    zf_free (input->description);
    zf_free (input->scope_idc);
    zf_free (input->scope_location);
    free (input->scope_cidrs); //  json_dumps allocations
    free (input->scope_hostnames);
    free (input->client_config);
    memset (input, 0, sizeof *input);
}

//  ---------------------------------------------------------------------------------------------
//  Tokens and users

static zf_status_t s_positive (json_t *value, const char *field, int64_t *out, zf_error_t *err)
{
    if (!json_is_integer (value) || json_integer_value (value) < 0)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must be a whole number from 0", field);
    *out = (int64_t) json_integer_value (value);
    return ZF_OK;
}

//  "24h", "90d", "30m": a duration up to ten years.
static zf_status_t s_duration (json_t *value, const char *field, int64_t *ms, zf_error_t *err)
{
    const char *text = json_string_value (value);
    if (!text || json_string_length (value) > 32)
        return zf_error_set (err, ZF_E_INVALID, field,
                             "%s: must be a duration such as \"24h\" or \"90d\"", field);
    size_t digits = strspn (text, "0123456789");
    const char *unit = text + digits;
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {{"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    int64_t scale = 0;
    for (size_t index = 0; index < ZF_ARRAY_LEN (units); index++)
        if (streq (unit, units[index].suffix))
            scale = units[index].ms;
    if (digits == 0 || digits > 6 || scale == 0)
        return zf_error_set (err, ZF_E_INVALID, field,
                             "%s: '%s' is not a duration such as \"24h\" or \"90d\"", field, text);
    *ms = strtoll (text, NULL, 10) * scale;
    if (*ms <= 0 || *ms > 3650LL * 86400000)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must be between 1s and 3650d", field);
    return ZF_OK;
}

static zf_status_t s_token_fields (json_t *body, zf_token_input_t *input, const char *known,
                                   zf_error_t *err)
{
    memset (input, 0, sizeof *input);
    zf_status_t status = ZF_OK;
    const char *key;
    json_t *value;
    json_object_foreach (body, key, value)
    {
        bool allowed = false;
        //  known is "name|cluster_id|…": look for the key as a whole word
        for (const char *cursor = known; *cursor;) {
            size_t len = strcspn (cursor, "|");
            if (strlen (key) == len && strncmp (cursor, key, len) == 0)
                allowed = true;
            cursor += len + (cursor[len] == '|');
        }
        if (!allowed)
            status = zf_error_set (err, ZF_E_INVALID, "body", "%.64s: unknown field (known: %s)",
                                   key, known);
        else if (streq (key, "name"))
            status = s_string (value, "name", S_NAME_MAX, true, &input->name, err);
        else if (streq (key, "cluster_id"))
            status = s_positive (value, "cluster_id", &input->cluster_id, err);
        else if (streq (key, "user_id"))
            status = s_positive (value, "user_id", &input->user_id, err);
        else if (streq (key, "max_uses"))
            status = s_positive (value, "max_uses", &input->max_uses, err);
        else if (streq (key, "expires_in"))
            status = s_duration (value, "expires_in", &input->expires_in_ms, err);
        else if (streq (key, "write")) {
            if (!json_is_boolean (value))
                status = zf_error_set (err, ZF_E_INVALID, "write", "write: must be true or false");
            input->write = json_is_true (value);
        } else if (streq (key, "role")) {
            const char *role = json_string_value (value);
            if (!role || (!streq (role, "admin") && !streq (role, "read-only")))
                status = zf_error_set (err, ZF_E_INVALID, "role",
                                       "role: must be \"admin\" or \"read-only\"");
            input->admin = role && streq (role, "admin");
        }
        if (status != ZF_OK)
            break;
    }
    if (status == ZF_OK && !input->name)
        input->name = zf_strdup ("");
    if (status != ZF_OK)
        zf_token_input_clear (input);
    return status;
}

zf_status_t zf_join_token_input_parse (json_t *body, zf_token_input_t *input, zf_error_t *err)
{
    return s_token_fields (body, input, "name|cluster_id|expires_in|max_uses", err);
}

zf_status_t zf_pat_input_parse (json_t *body, zf_token_input_t *input, zf_error_t *err)
{
    return s_token_fields (body, input, "name|user_id|write|expires_in", err);
}

zf_status_t zf_user_input_parse (json_t *body, zf_token_input_t *input, zf_error_t *err)
{
    zf_status_t status = s_token_fields (body, input, "name|role", err);
    if (status == ZF_OK && (!*input->name || !json_object_get (body, "role"))) {
        zf_token_input_clear (input);
        return zf_error_set (err, ZF_E_MISSING, "name",
                             "a user needs a name and a role (\"admin\" or \"read-only\")");
    }
    return status;
}

void zf_token_input_clear (zf_token_input_t *input)
{
    zf_free (input->name);
    memset (input, 0, sizeof *input);
}
