/*  zfly-tap — print the bus traffic a zfly process mirrors to its tap endpoint.

    One JSON line per message or socket event; see bus/zf_tap.h for what a tap carries.
    Usage: zfly-tap ENDPOINT [--type PREFIX] [--actor NAME] [--count N]
                    [--server-key Z85 --cert FILE] */
#include "zf_bus.h"
#include "zf_json.h"
#include <getopt.h>

typedef struct {
    const char *type_prefix;
    const char *actor;
    long count;
} filter_t;

static void s_usage (FILE *out)
{
    fprintf (out,
             "usage: zfly-tap ENDPOINT [--type PREFIX] [--actor NAME] [--count N]\n"
             "                [--server-key Z85 --cert FILE]\n"
             "\n"
             "Prints one JSON line per bus message or socket event that a zfly process mirrors\n"
             "to its tap endpoint ([node] tap in its INI file).\n"
             "\n"
             "  --type PREFIX      only messages whose type starts with PREFIX (no socket events)\n"
             "  --actor NAME       only traffic of actor NAME (tapping actor, sender or receiver)\n"
             "  --count N          exit after printing N lines\n"
             "  --server-key Z85   CURVE public key of the node, for a tcp:// tap endpoint\n"
             "  --cert FILE        our secret certificate (zfly keygen), for a tcp:// endpoint\n");
}

static json_t *s_unpack (const void *data, size_t size, msgpack_unpacked *holder)
{
    size_t offset = 0;
    if (msgpack_unpack_next (holder, data, size, &offset) != MSGPACK_UNPACK_SUCCESS)
        return NULL;
    return zf_json_from_msgpack (&holder->data);
}

static bool s_name_matches (const char *name, const char *actor)
{
    if (!name)
        return false;
    size_t len = strlen (actor);
    return strncmp (name, actor, len) == 0 && (name[len] == '\0' || name[len] == '@');
}

//  Builds the output line for one tap record; NULL when the filter drops it.
static json_t *s_render (zmsg_t *record, const filter_t *filter)
{
    char *topic = zmsg_popstr (record);
    zframe_t *meta_frame = zmsg_pop (record);
    zframe_t *envelope_frame = zmsg_pop (record);
    msgpack_unpacked holder;
    msgpack_unpacked_init (&holder);
    json_t *line =
        meta_frame ? s_unpack (zframe_data (meta_frame), zframe_size (meta_frame), &holder) : NULL;
    if (!topic || !line || !json_is_object (line)) {
        json_decref (line);
        line = json_pack ("{s:s}", "kind", "malformed_tap_record");
    } else if (topic[0] == 's') {
        json_object_set_new (line, "kind", json_string ("socket"));
    } else {
        json_object_set_new (line, "kind", json_string ("message"));
        json_t *envelope = envelope_frame ? s_unpack (zframe_data (envelope_frame),
                                                      zframe_size (envelope_frame), &holder)
                                          : NULL;
        if (json_is_object (envelope)) {
            static const char *const fields[] = {"type", "v", "id", "re", "from", "to", "body"};
            for (size_t index = 0; index < ZF_ARRAY_LEN (fields); index++) {
                json_t *value = json_object_get (envelope, fields[index]);
                if (value)
                    json_object_set (line, fields[index], value);
            }
        } else
            json_object_set_new (line, "undecodable", json_true ());
        json_object_set_new (
            line, "size",
            json_integer (envelope_frame ? (json_int_t) zframe_size (envelope_frame) : 0));
        json_decref (envelope);
    }
    if (filter->actor) {
        const char *actor = json_string_value (json_object_get (line, "actor"));
        bool keep =
            (actor && streq (actor, filter->actor))
            || s_name_matches (json_string_value (json_object_get (line, "from")), filter->actor)
            || s_name_matches (json_string_value (json_object_get (line, "to")), filter->actor);
        if (!keep) {
            json_decref (line);
            line = NULL;
        }
    }
    msgpack_unpacked_destroy (&holder);
    zframe_destroy (&meta_frame);
    zframe_destroy (&envelope_frame);
    zstr_free (&topic);
    return line;
}

int main (int argc, char *argv[])
{
    filter_t filter = {0};
    const char *server_key = NULL;
    const char *cert_path = NULL;
    static const struct option options[] = {
        {"type", required_argument, NULL, 't'},
        {"actor", required_argument, NULL, 'a'},
        {"count", required_argument, NULL, 'n'},
        {"server-key", required_argument, NULL, 'k'},
        {"cert", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long (argc, argv, "t:a:n:k:C:h", options, NULL)) != -1) {
        char *end = NULL;
        switch (option) {
        case 't': filter.type_prefix = optarg; break;
        case 'a': filter.actor = optarg; break;
        case 'n':
            filter.count = strtol (optarg, &end, 10);
            if (!end || *end || filter.count <= 0) {
                fprintf (stderr, "zfly-tap: --count needs a positive number, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'k': server_key = optarg; break;
        case 'C': cert_path = optarg; break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        s_usage (stderr);
        return 2;
    }
    const char *endpoint = argv[optind];
    zf_bus_process_init ();
    zsock_t *tap = zsock_new (ZMQ_SUB);
    ZF_ASSERT (tap);
    if (strncmp (endpoint, "tcp://", 6) == 0 && server_key) {
        zcert_t *cert = cert_path ? zcert_load (cert_path) : zcert_new ();
        if (!cert) {
            fprintf (stderr, "zfly-tap: cannot read certificate %s\n", cert_path);
            return 2;
        }
        zcert_apply (cert, tap);
        zsock_set_curve_serverkey (tap, server_key);
        zcert_destroy (&cert);
    }
    if (zsock_connect (tap, "%s", endpoint) != 0) {
        fprintf (stderr, "zfly-tap: cannot connect to %s: %s\n", endpoint,
                 zmq_strerror (zmq_errno ()));
        return 2;
    }
    if (filter.type_prefix) {
        char *subscription = zf_asprintf ("m:%s", filter.type_prefix);
        zsock_set_subscribe (tap, subscription);
        zf_free (subscription);
    } else
        zsock_set_subscribe (tap, "");

    long printed = 0;
    while (!zsys_interrupted && (filter.count == 0 || printed < filter.count)) {
        zmsg_t *record = zmsg_recv (tap);
        if (!record)
            break;
        json_t *line = s_render (record, &filter);
        zmsg_destroy (&record);
        if (!line)
            continue;
        char *text = json_dumps (line, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
        if (text) {
            printf ("%s\n", text);
            fflush (stdout);
            free (text);
            printed++;
        }
        json_decref (line);
    }
    zsock_destroy (&tap);
    return 0;
}
