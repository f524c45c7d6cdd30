/*  zfly-piecebench — what each step of a piece's way from a parent to a child costs on this
    machine, per byte, and the bound for one parent -> one child that follows from it.

    A piece a child takes from a parent is: read from the parent's page cache (pread), checked
    against its XXH3 checksum, sent through ZeroMQ (libzmq's CURVE encrypts it on the parent and
    decrypts it on the child, or plain TCP with `insecure = true`), checked against its SHA-256
    on the child, written into the child's page cache (32 KiB pwrites, as storage does) and its
    XXH3 checksum taken. Each step is timed here alone, in CPU seconds per GiB:

      read      pread of a cached file, piece by piece, into a pool of buffers larger than the
                CPU caches (as the daemon's buffers are)
      xxh3      XXH3-64 over the pool, piece by piece
      sha256    SHA-256 (OpenSSL EVP: SHA-NI where the CPU has it)
      write     32 KiB pwrites into a fresh file (fresh page-cache pages), deleted afterwards,
                in two states of the memory the page cache takes:
                  backed  the same size written and deleted just before: pages freed a moment
                          ago, as on bare metal, where free memory always stays backed
                  cold    nothing freed for COLD_WAIT_S seconds before
                On a VM whose host takes back free guest memory (virtio-balloon free page
                reporting, /sys/module/page_reporting) the host must fault a page in again at
                its first write, which the guest sees as a slow copy; how much of that a write
                meets grows with how much fresh memory it takes, so give --size as large as
                the transfer the bound is for (docs/benchmarks.md: 0.25 s per GiB for 1 GiB,
                0.75-0.85 for 4 GiB on the project's VM). On bare metal the two are the same.
      zmq       messages of one piece from a PUSH in a forked process to a PULL here over
                tcp://127.0.0.1, plain and with CURVE, real libzmq sockets: the sender's and the
                receiver's CPU (getrusage of each process, libzmq's I/O threads and the kernel's
                TCP work included) and the rate; with --streams N also over N connections
                (N I/O threads a side)
      crypto    libsodium's crypto_box_afternm / _open_afternm alone (XSalsa20-Poly1305, what
                libzmq's CURVE runs per message), to tell the cipher from libzmq's copies

    The bound, for each mode (plain, curve):
      parent side = read + xxh3 + zmq send      child side = zmq receive + sha256 + write + xxh3
    with the cold write (a child writes a new file into memory nobody used for a while: the
    transfers' children do, and so does a node pulling a model file), and again with the backed
    write (what the same machine would allow if its free memory stayed backed).
      one host (both daemons share CORES cores):  CORES / (parent side + child side)
      two hosts (CORES cores each):               CORES / max (parent side, child side)
    in Gbit/s of content. It assumes the work spreads over the cores (the daemons have one
    thread per actor plus libzmq's I/O threads) and counts nothing for bookkeeping: a bound,
    not a prediction. With --digest the child hashes the whole content once more (a task named
    by its digest, every OCI blob).

    Usage: zfly-piecebench [--size 1G] [--piece 8M] [--dir /var/tmp] [--reps 3] [--cores N]
                           [--streams N] [--digest] [--json PATH]
    Sizes take K, M, G. Each step is run --reps times; the median counts. */
#include "zf_prelude.h"
#include <getopt.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <xxhash.h>

#define WRITE_CALL (32 * 1024) //  storage's pwrite size (docs/benchmarks.md "Data plane")
#define POOL_SIZE  (256u << 20)
#define REPS_MAX   15
//  Linux reports free pages to the host at most every 2 s (mm/page_reporting.c); this long
//  without freeing anything leaves the host time to take them.
#define COLD_WAIT_S    10
#define COLD_WAIT_TEXT "10"

typedef struct {
    uint64_t size, piece;
    const char *dir, *json;
    int reps, cores, streams;
    bool digest;
    uint64_t chunks[8]; //  frame sizes a piece is sent in (0: one frame), the first for the bound
    int chunk_count;
    uint64_t chunk; //  of this transfer
} options_t;

typedef struct {
    double cpu_s, wall_s; //  per run
} sample_t;

typedef struct {
    double send_cpu_s, recv_cpu_s, wall_s;
} transfer_t;

static uint8_t *s_pool;
static size_t s_pool_pieces;

static double s_thread_cpu (void)
{
    struct timespec now;
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &now);
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

static double s_process_cpu (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return (double) usage.ru_utime.tv_sec + (double) usage.ru_utime.tv_usec / 1e6
           + (double) usage.ru_stime.tv_sec + (double) usage.ru_stime.tv_usec / 1e6;
}

static double s_wall (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

static uint64_t s_parse_size (const char *text)
{
    char *end;
    uint64_t value = strtoull (text, &end, 10);
    switch (*end) {
    case 'K':
    case 'k':
        value <<= 10;
        end++;
        break;
    case 'M':
    case 'm':
        value <<= 20;
        end++;
        break;
    case 'G':
    case 'g':
        value <<= 30;
        end++;
        break;
    default: break;
    }
    if (*end || value == 0) {
        fprintf (stderr, "zfly-piecebench: bad size '%s'\n", text);
        exit (2);
    }
    return value;
}

static uint8_t *s_piece_at (uint64_t index)
{
    return s_pool + (index % s_pool_pieces) * (POOL_SIZE / s_pool_pieces);
}

static int s_compare_double (const void *left, const void *right)
{
    double a = *(const double *) left, b = *(const double *) right;
    return a < b ? -1 : a > b;
}

static double s_median (double *values, int count)
{
    qsort (values, (size_t) count, sizeof *values, s_compare_double);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

//  --- the steps on one thread -------------------------------------------------------------------

typedef enum {
    STEP_READ,
    STEP_XXH3,
    STEP_SHA256,
    STEP_WRITE,      //  into pages freed a moment ago
    STEP_WRITE_COLD, //  into pages freed COLD_WAIT_S ago
    STEP_SEAL,
    STEP_OPEN,
    STEP_COUNT
} step_t;

static const char *s_step_names[] = {"read",       "xxh3", "sha256", "write",
                                     "write_cold", "seal", "open"};

static void s_write_all (int fd, const uint8_t *data, size_t size, uint64_t offset)
{
    for (size_t done = 0; done < size;) {
        size_t call = size - done < WRITE_CALL ? size - done : WRITE_CALL;
        ssize_t wrote = pwrite (fd, data + done, call, (off_t) (offset + done));
        if (wrote <= 0) {
            fprintf (stderr, "zfly-piecebench: write: %s\n", strerror (errno));
            exit (1);
        }
        done += (size_t) wrote;
    }
}

//  Writes options->size bytes of the pool to path, piece by piece (the source; the warm-up of
//  the backed write).
static void s_write_file (const options_t *options, const char *path)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf (stderr, "zfly-piecebench: cannot create %s: %s\n", path, strerror (errno));
        exit (1);
    }
    for (uint64_t offset = 0; offset < options->size; offset += options->piece)
        s_write_all (fd, s_piece_at (offset / options->piece), options->piece, offset);
    close (fd);
}

//  One run of one step over options->size bytes: CPU seconds of this thread, and wall.
static sample_t s_step (const options_t *options, step_t step, const char *source)
{
    uint64_t pieces = options->size / options->piece;
    size_t piece = (size_t) options->piece;
    int fd = -1;
    char target[PATH_MAX];
    snprintf (target, sizeof target, "%s/piecebench-%d.out", options->dir, (int) getpid ());
    if (step == STEP_READ)
        fd = open (source, O_RDONLY | O_CLOEXEC);
    bool writes = step == STEP_WRITE || step == STEP_WRITE_COLD;
    if (step == STEP_WRITE) //  the same size written and freed first: its pages are backed
        s_write_file (options, target);
    if (step == STEP_WRITE_COLD)
        sleep (COLD_WAIT_S);
    if (writes)
        fd = open (target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if ((step == STEP_READ || writes) && fd < 0) {
        fprintf (stderr, "zfly-piecebench: open: %s\n", strerror (errno));
        exit (1);
    }
    static uint8_t key[crypto_box_BEFORENMBYTES], nonce[crypto_box_NONCEBYTES];
    uint8_t *sealed = NULL;
    if (step == STEP_SEAL || step == STEP_OPEN) {
        //  libzmq's layout: crypto_box_ZEROBYTES of zeros before the message, in and out
        sealed = zf_malloc (piece + crypto_box_ZEROBYTES);
        randombytes_buf (key, sizeof key);
        memset (s_pool, 0, crypto_box_ZEROBYTES);
        ZF_ASSERT (crypto_box_afternm (sealed, s_pool, piece, nonce, key) == 0);
    }
    uint64_t sink = 0;
    double cpu = s_thread_cpu (), wall = s_wall ();
    for (uint64_t index = 0; index < pieces; index++) {
        uint8_t *data = s_piece_at (index);
        switch (step) {
        case STEP_READ: {
            size_t done = 0;
            while (done < piece) {
                ssize_t got = pread (fd, data + done, piece - done, (off_t) (index * piece + done));
                ZF_ASSERT (got > 0);
                done += (size_t) got;
            }
            break;
        }
        case STEP_XXH3: sink += XXH3_64bits (data, piece); break;
        case STEP_SHA256: {
            uint8_t digest[32];
            unsigned int digest_size = 0;
            ZF_ASSERT (EVP_Digest (data, piece, digest, &digest_size, EVP_sha256 (), NULL) == 1);
            sink += digest[0];
            break;
        }
        case STEP_WRITE:
        case STEP_WRITE_COLD: s_write_all (fd, data, piece, index * piece); break;
        case STEP_COUNT: ZF_ASSERT (!"not a step"); break;
        case STEP_SEAL:
            //  In place over the pool would change it; into one buffer, as libzmq does into
            //  a fresh message (its copy of the plaintext first is in the zmq numbers).
            ZF_ASSERT (crypto_box_afternm (sealed, data, piece, nonce, key) == 0);
            break;
        case STEP_OPEN:
            //  The same sealed piece every time (opening needs a valid box): the output
            //  goes to the pool, as libzmq's goes to fresh memory.
            ZF_ASSERT (crypto_box_open_afternm (data, sealed, piece, nonce, key) == 0);
            break;
        }
    }
    sample_t sample = {.cpu_s = s_thread_cpu () - cpu, .wall_s = s_wall () - wall};
    if (sink == 42)
        printf (" "); //  keeps the hashes from being optimised away
    if (fd >= 0)
        close (fd);
    if (writes)
        unlink (target);
    zf_free (sealed);
    return sample;
}

//  --- ZeroMQ over loopback ----------------------------------------------------------------------

static void s_free_nothing (void *data, void *hint)
{
    (void) data;
    (void) hint;
}

static void s_set_int (void *socket, int option, int value)
{
    ZF_ASSERT (zmq_setsockopt (socket, option, &value, sizeof value) == 0);
}

//  The sender, in a forked process: `pieces` messages over `streams` connections, round
//  robin (PUSH does that), then its CPU seconds (all threads, kernel included) to `report`
//  once the receiver says everything arrived.
static void s_sender (const options_t *options, const char *endpoint, const char *server_key,
                      int ready_fd, int report_fd)
{
    void *context = zmq_ctx_new ();
    zmq_ctx_set (context, ZMQ_IO_THREADS, options->streams);
    void *push = zmq_socket (context, ZMQ_PUSH);
    s_set_int (push, ZMQ_SNDHWM, 4);
    s_set_int (push, ZMQ_LINGER, 0);
    if (*server_key) {
        char public_key[41], secret_key[41];
        ZF_ASSERT (zmq_curve_keypair (public_key, secret_key) == 0);
        ZF_ASSERT (zmq_setsockopt (push, ZMQ_CURVE_SERVERKEY, server_key, 40) == 0);
        ZF_ASSERT (zmq_setsockopt (push, ZMQ_CURVE_PUBLICKEY, public_key, 40) == 0);
        ZF_ASSERT (zmq_setsockopt (push, ZMQ_CURVE_SECRETKEY, secret_key, 40) == 0);
    }
    for (int stream = 0; stream < options->streams; stream++)
        ZF_ASSERT (zmq_connect (push, endpoint) == 0);
    char go;
    ZF_ASSERT (read (ready_fd, &go, 1) == 1); //  the receiver has every connection
    double cpu = s_process_cpu ();
    uint64_t pieces = options->size / options->piece;
    uint64_t chunk = options->chunk ? options->chunk : options->piece;
    for (uint64_t index = 0; index < pieces; index++)
        for (uint64_t offset = 0; offset < options->piece; offset += chunk) {
            zmq_msg_t msg;
            size_t size =
                (size_t) (options->piece - offset < chunk ? options->piece - offset : chunk);
            //  The daemon sends the frames it read into, moved, not copied: zero copy here.
            zmq_msg_init_data (&msg, s_piece_at (index) + offset, size, s_free_nothing, NULL);
            bool more = offset + size < options->piece;
            ZF_ASSERT (zmq_msg_send (&msg, push, more ? ZMQ_SNDMORE : 0) >= 0);
        }
    ZF_ASSERT (read (ready_fd, &go, 1) == 1); //  all arrived
    double used = s_process_cpu () - cpu;
    ZF_ASSERT (write (report_fd, &used, sizeof used) == sizeof used);
    zmq_close (push);
    zmq_ctx_term (context);
    _exit (0);
}

static transfer_t s_transfer (const options_t *options, bool curve)
{
    void *context = zmq_ctx_new ();
    zmq_ctx_set (context, ZMQ_IO_THREADS, options->streams);
    void *pull = zmq_socket (context, ZMQ_PULL);
    s_set_int (pull, ZMQ_RCVHWM, 4);
    s_set_int (pull, ZMQ_LINGER, 0);
    char server_key[41] = "";
    if (curve) {
        char secret_key[41];
        ZF_ASSERT (zmq_curve_keypair (server_key, secret_key) == 0);
        s_set_int (pull, ZMQ_CURVE_SERVER, 1);
        ZF_ASSERT (zmq_setsockopt (pull, ZMQ_CURVE_SECRETKEY, secret_key, 40) == 0);
    }
    void *monitor_pair = NULL;
    ZF_ASSERT (zmq_socket_monitor (pull, "inproc://piecebench-monitor",
                                   curve ? ZMQ_EVENT_HANDSHAKE_SUCCEEDED : ZMQ_EVENT_ACCEPTED)
               == 0);
    monitor_pair = zmq_socket (context, ZMQ_PAIR);
    ZF_ASSERT (zmq_connect (monitor_pair, "inproc://piecebench-monitor") == 0);
    ZF_ASSERT (zmq_bind (pull, "tcp://127.0.0.1:*") == 0);
    char endpoint[256];
    size_t endpoint_size = sizeof endpoint;
    ZF_ASSERT (zmq_getsockopt (pull, ZMQ_LAST_ENDPOINT, endpoint, &endpoint_size) == 0);
    int go_pipe[2], report_pipe[2];
    ZF_ASSERT (pipe (go_pipe) == 0 && pipe (report_pipe) == 0);
    fflush (stdout);
    pid_t pid = fork ();
    ZF_ASSERT (pid >= 0);
    if (pid == 0) {
        close (go_pipe[1]);
        close (report_pipe[0]);
        s_sender (options, endpoint, server_key, go_pipe[0], report_pipe[1]);
    }
    close (go_pipe[0]);
    close (report_pipe[1]);
    for (int connected = 0; connected < options->streams;) {
        zmq_msg_t event;
        zmq_msg_init (&event);
        ZF_ASSERT (zmq_msg_recv (&event, monitor_pair, 0) >= 0);
        bool first_frame = zmq_msg_more (&event);
        zmq_msg_close (&event);
        if (first_frame) { //  the address frame follows
            zmq_msg_init (&event);
            ZF_ASSERT (zmq_msg_recv (&event, monitor_pair, 0) >= 0);
            zmq_msg_close (&event);
            connected++;
        }
    }
    ZF_ASSERT (write (go_pipe[1], "g", 1) == 1);
    double cpu = s_process_cpu (), wall = s_wall ();
    uint64_t pieces = options->size / options->piece;
    for (uint64_t index = 0; index < pieces; index++) {
        uint64_t received = 0;
        bool more = true;
        while (more) {
            zmq_msg_t msg;
            zmq_msg_init (&msg);
            int size = zmq_msg_recv (&msg, pull, 0);
            ZF_ASSERT (size > 0);
            received += (uint64_t) size;
            more = zmq_msg_more (&msg);
            zmq_msg_close (&msg);
        }
        ZF_ASSERT (received == options->piece);
    }
    transfer_t result = {.recv_cpu_s = s_process_cpu () - cpu, .wall_s = s_wall () - wall};
    ZF_ASSERT (write (go_pipe[1], "d", 1) == 1);
    ZF_ASSERT (read (report_pipe[0], &result.send_cpu_s, sizeof result.send_cpu_s)
               == sizeof result.send_cpu_s);
    waitpid (pid, NULL, 0);
    close (go_pipe[1]);
    close (report_pipe[0]);
    zmq_socket_monitor (pull, NULL, 0);
    zmq_close (monitor_pair);
    zmq_close (pull);
    zmq_ctx_term (context);
    return result;
}

//  --- report -----------------------------------------------------------------------------------

static double s_per_gib (const options_t *options, double seconds)
{
    return seconds * (double) (1u << 30) / (double) options->size;
}

static double s_gbit (double seconds_per_gib)
{
    return 8.0 * (double) (1u << 30) / seconds_per_gib / 1e9;
}

//  One transfer setting, its median CPU per GiB on each side and its rate.
typedef struct {
    bool curve;
    uint64_t chunk;
    int streams;
    double send_s, recv_s, gbit;
} setting_t;

static void s_measure (const options_t *options, setting_t *setting)
{
    double sends[REPS_MAX], recvs[REPS_MAX], rates[REPS_MAX];
    options_t run = *options;
    run.streams = setting->streams;
    run.chunk = setting->chunk;
    for (int rep = 0; rep < options->reps; rep++) {
        transfer_t transfer = s_transfer (&run, setting->curve);
        sends[rep] = s_per_gib (options, transfer.send_cpu_s);
        recvs[rep] = s_per_gib (options, transfer.recv_cpu_s);
        rates[rep] = 8.0 * (double) options->size / transfer.wall_s / 1e9;
    }
    setting->send_s = s_median (sends, options->reps);
    setting->recv_s = s_median (recvs, options->reps);
    setting->gbit = s_median (rates, options->reps);
}

static void s_parse_chunks (options_t *options, const char *text)
{
    options->chunk_count = 0;
    char *copy = zf_strdup (text), *rest = copy, *item;
    while ((item = strsep (&rest, ","))
           && options->chunk_count < (int) ZF_ARRAY_LEN (options->chunks))
        options->chunks[options->chunk_count++] = streq (item, "0") ? 0 : s_parse_size (item);
    zf_free (copy);
}

static const char *s_chunk_text (uint64_t chunk, char *buffer, size_t size)
{
    if (chunk == 0)
        snprintf (buffer, size, "one frame");
    else if (chunk >= (1u << 20))
        snprintf (buffer, size, "%" PRIu64 " MiB frames", chunk >> 20);
    else
        snprintf (buffer, size, "%" PRIu64 " KiB frames", chunk >> 10);
    return buffer;
}

int main (int argc, char *argv[])
{
    options_t options = {.size = 1u << 30,
                         .piece = 8u << 20,
                         .dir = "/var/tmp",
                         .reps = 3,
                         .streams = 2,
                         .chunk_count = 1};
    options.cores = (int) sysconf (_SC_NPROCESSORS_ONLN);
    static const struct option longs[] = {
        {"size", required_argument, NULL, 's'},
        {"piece", required_argument, NULL, 'p'},
        {"dir", required_argument, NULL, 'd'},
        {"reps", required_argument, NULL, 'r'},
        {"cores", required_argument, NULL, 'c'},
        {"streams", required_argument, NULL, 'n'},
        {"digest", no_argument, NULL, 'D'},
        {"json", required_argument, NULL, 'j'},
        {"chunks", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (option) {
        case 's': options.size = s_parse_size (optarg); break;
        case 'p': options.piece = s_parse_size (optarg); break;
        case 'd': options.dir = optarg; break;
        case 'r': options.reps = (int) strtol (optarg, NULL, 10); break;
        case 'c': options.cores = (int) strtol (optarg, NULL, 10); break;
        case 'n': options.streams = (int) strtol (optarg, NULL, 10); break;
        case 'D': options.digest = true; break;
        case 'j': options.json = optarg; break;
        case 'k': s_parse_chunks (&options, optarg); break;
        default:
            fprintf (stderr, "usage: zfly-piecebench [--size 1G] [--piece 8M] [--chunks 0,256K] "
                             "[--dir DIR] [--reps 3] [--cores N] [--streams N] [--digest] "
                             "[--json PATH]\n");
            return option == 'h' ? 0 : 2;
        }
    }
    bool chunks_ok = options.chunk_count > 0;
    for (int index = 0; index < options.chunk_count; index++)
        chunks_ok = chunks_ok && options.chunks[index] <= options.piece;
    if (options.reps < 1 || options.reps > REPS_MAX || options.cores < 1 || options.streams < 1
        || options.piece > POOL_SIZE / 4 || options.size < options.piece || !chunks_ok) {
        fprintf (stderr,
                 "zfly-piecebench: reps 1..%d, cores and streams >= 1, piece <= %u MiB, "
                 "size >= piece, chunks <= piece\n",
                 REPS_MAX, POOL_SIZE / 4 >> 20);
        return 2;
    }
    options.size -= options.size % options.piece;
    ZF_ASSERT (sodium_init () >= 0);
    s_pool = zf_malloc (POOL_SIZE);
    s_pool_pieces = POOL_SIZE / options.piece;
    randombytes_buf (s_pool, POOL_SIZE);
    char source[PATH_MAX];
    snprintf (source, sizeof source, "%s/piecebench-%d.src", options.dir, (int) getpid ());
    s_write_file (&options, source);

    double steps[STEP_COUNT][REPS_MAX];
    for (int rep = 0; rep < options.reps; rep++)
        for (step_t step = STEP_READ; step < STEP_COUNT; step++)
            steps[step][rep] = s_per_gib (&options, s_step (&options, step, source).cpu_s);
    unlink (source);
    double per_gib[STEP_COUNT];
    for (step_t step = STEP_READ; step < STEP_COUNT; step++)
        per_gib[step] = s_median (steps[step], options.reps);

    //  Every chunk size on one connection, then the first over --streams connections; the
    //  first chunk size on one connection makes the bound.
    setting_t settings[2 * (ZF_ARRAY_LEN (options.chunks) + 1)];
    size_t setting_count = 0;
    for (int curve = 0; curve < 2; curve++) {
        for (int index = 0; index < options.chunk_count; index++)
            settings[setting_count++] =
                (setting_t){.curve = curve, .chunk = options.chunks[index], .streams = 1};
        if (options.streams > 1)
            settings[setting_count++] =
                (setting_t){.curve = curve, .chunk = options.chunks[0], .streams = options.streams};
    }
    for (size_t index = 0; index < setting_count; index++)
        s_measure (&options, &settings[index]);
    const setting_t *base[2] = {&settings[0], &settings[setting_count / 2]};

    printf ("zfly-piecebench: %.2f GiB in pieces of %" PRIu64 " KiB, %d cores, medians of %d\n\n",
            (double) options.size / (double) (1u << 30), options.piece >> 10, options.cores,
            options.reps);
    printf ("| step | CPU s per GiB | rate |\n|---|---|---|\n");
    const char *labels[] = {"read from the page cache (pread)",
                            "XXH3-64",
                            "SHA-256",
                            "write into fresh page cache (32 KiB pwrites), pages backed",
                            "write into fresh page cache, cold pages (freed " COLD_WAIT_TEXT
                            " s before)",
                            "XSalsa20-Poly1305 seal (libsodium alone)",
                            "XSalsa20-Poly1305 open (libsodium alone)"};
    for (step_t step = STEP_READ; step < STEP_COUNT; step++)
        printf ("| %s | %.3f | %.2f Gbit/s on one core |\n", labels[step], per_gib[step],
                s_gbit (per_gib[step]));
    const char *modes[] = {"plain", "curve"};
    char text[64];
    for (size_t index = 0; index < setting_count; index++) {
        const setting_t *setting = &settings[index];
        printf ("| ZeroMQ %s, %s, %d connection%s: send / receive | %.3f / %.3f | %.2f Gbit/s "
                "measured |\n",
                modes[setting->curve], s_chunk_text (setting->chunk, text, sizeof text),
                setting->streams, setting->streams > 1 ? "s" : "", setting->send_s, setting->recv_s,
                setting->gbit);
    }
    printf ("\nCURVE's own cost (curve - plain, %s, one connection): send %.3f, receive %.3f CPU "
            "s per GiB\n\n",
            s_chunk_text (options.chunks[0], text, sizeof text), base[1]->send_s - base[0]->send_s,
            base[1]->recv_s - base[0]->recv_s);

    //  [write][mode]: write 0 is the cold one (the bound), 1 the backed one
    double parent[2], child[2][2], one_host[2][2], two_hosts[2][2];
    const step_t writes[2] = {STEP_WRITE_COLD, STEP_WRITE};
    const char *write_names[2] = {"cold pages", "pages backed"};
    printf ("| mode | writes into | parent side s/GiB | child side s/GiB | bound, one host (%d "
            "cores) | bound, two hosts (%d cores each) |\n|---|---|---|---|---|---|\n",
            options.cores, options.cores);
    for (int curve = 0; curve < 2; curve++) {
        parent[curve] = per_gib[STEP_READ] + per_gib[STEP_XXH3] + base[curve]->send_s;
        for (int write = 0; write < 2; write++) {
            child[write][curve] = base[curve]->recv_s
                                  + per_gib[STEP_SHA256] * (options.digest ? 2 : 1)
                                  + per_gib[writes[write]] + per_gib[STEP_XXH3];
            one_host[write][curve] = s_gbit ((parent[curve] + child[write][curve]) / options.cores);
            double slower =
                parent[curve] > child[write][curve] ? parent[curve] : child[write][curve];
            two_hosts[write][curve] = s_gbit (slower / options.cores);
            printf ("| %s | %s | %.3f | %.3f | %.2f Gbit/s | %.2f Gbit/s |\n", modes[curve],
                    write_names[write], parent[curve], child[write][curve], one_host[write][curve],
                    two_hosts[write][curve]);
        }
    }
    if (options.json) {
        FILE *file = fopen (options.json, "w");
        if (!file) {
            fprintf (stderr, "zfly-piecebench: cannot write %s: %s\n", options.json,
                     strerror (errno));
            return 1;
        }
        fprintf (file,
                 "{\"size\": %" PRIu64 ", \"piece\": %" PRIu64 ", \"chunk\": %" PRIu64
                 ", \"cores\": %d, \"digest\": %s,\n \"cpu_s_per_gib\": {",
                 options.size, options.piece, options.chunks[0], options.cores,
                 options.digest ? "true" : "false");
        for (step_t step = STEP_READ; step < STEP_COUNT; step++)
            fprintf (file, "\"%s\": %.4f, ", s_step_names[step], per_gib[step]);
        for (int curve = 0; curve < 2; curve++)
            fprintf (file, "\"%s_send\": %.4f, \"%s_recv\": %.4f%s", modes[curve],
                     base[curve]->send_s, modes[curve], base[curve]->recv_s, curve ? "" : ", ");
        fprintf (file, "},\n \"transfers\": [");
        for (size_t index = 0; index < setting_count; index++)
            fprintf (file,
                     "%s{\"mode\": \"%s\", \"chunk\": %" PRIu64 ", \"streams\": %d, "
                     "\"send_s\": %.4f, \"recv_s\": %.4f, \"gbit\": %.3f}",
                     index ? ",\n   " : "", modes[settings[index].curve], settings[index].chunk,
                     settings[index].streams, settings[index].send_s, settings[index].recv_s,
                     settings[index].gbit);
        //  bound_gbit: with cold writes (what a transfer into new memory meets here);
        //  bound_gbit_backed: with the backed ones
        const char *keys[2] = {"bound_gbit", "bound_gbit_backed"};
        for (int write = 0; write < 2; write++) {
            fprintf (file, "%s\n \"%s\": {", write ? "," : "],", keys[write]);
            for (int curve = 0; curve < 2; curve++)
                fprintf (file, "\"%s\": {\"one_host\": %.3f, \"two_hosts\": %.3f}%s", modes[curve],
                         one_host[write][curve], two_hosts[write][curve], curve ? "" : ", ");
            fprintf (file, "}");
        }
        fprintf (file, "}\n");
        fclose (file);
    }
    zf_free (s_pool);
    return 0;
}
