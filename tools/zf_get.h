/*  zf_get.h — the parts of zfly-get and what they share; only zfly-get's files include it.

    zfly-get is one program in five files, each with one job:
      tools/zfly-get.c        the command line, and main: options, configuration, the run
      tools/zf_get_daemon.c   where the daemon's fetcher and storage listen (its INI file)
      tools/zf_get_download.c the task reader's events, the loop, how a download ends
      tools/zf_get_output.c   PATH.part: writing and copying pieces into it, and renaming it
      tools/zf_get_link.c     PATH as a hard link of the cache file instead of a copy
      tools/zf_get_progress.c the progress display (a class of its own: it knows only bytes)
    A download is one zf_get_t, which the first five share. */
#ifndef ZF_GET_H_INCLUDED
#define ZF_GET_H_INCLUDED

#include "zf_bus.h"
#include "zf_config.h"
#include "zf_msgs.h"
#include "zf_task_reader.h"
#include <openssl/evp.h>
#include <sys/types.h>

//  Exit status (zfly-get --help says what each means to the user).
#define ZF_GET_EXIT_OK          0
#define ZF_GET_EXIT_OTHER       1
#define ZF_GET_EXIT_USAGE       2
#define ZF_GET_EXIT_UNREACHABLE 3
#define ZF_GET_EXIT_SOURCE      4
#define ZF_GET_EXIT_DIGEST      5

#define ZF_GET_HEADERS_MAX     64         //  --header options
#define ZF_GET_PARENTS_ARG_MAX 16         //  --parent options: a cap on the command line
#define ZF_GET_RATE_WINDOW     16         //  progress samples the rate is averaged over (~3 s)
#define ZF_GET_COPY_BUFFER     (4u << 20) //  copies of located pieces through our buffer, per call
#define ZF_GET_DIRECT_ALIGN    4096       //  O_DIRECT offsets, lengths and buffers: 512 or 4096

//  ---------------------------------------------------------------------------------------------
//  zf_get_progress.c: the progress display

typedef enum {
    ZF_GET_PROGRESS_AUTO,
    ZF_GET_PROGRESS_BAR,
    ZF_GET_PROGRESS_LINES,
    ZF_GET_PROGRESS_NONE
} zf_get_progress_mode_t;

typedef struct {
    zf_get_progress_mode_t mode; //  BAR, LINES or NONE (AUTO is decided before the run)
    int64_t started_ms, last_line_ms;
    int64_t sample_ms[ZF_GET_RATE_WINDOW];
    uint64_t sample_bytes[ZF_GET_RATE_WINDOW];
    size_t sample_count;
    bool bar_drawn;
} zf_get_progress_t;

//  Shows done of total bytes: the bar redrawn, or a line every few seconds. final: the last
//  time, at the whole run's average rate.
void zf_get_progress_draw (zf_get_progress_t *self, uint64_t done, uint64_t total, bool final);
//  Ends a redrawn bar line before any other message goes to stderr.
void zf_get_progress_break (zf_get_progress_t *self);
//  The bytes start over: the rate samples so far mean nothing.
void zf_get_progress_restart (zf_get_progress_t *self);

//  ---------------------------------------------------------------------------------------------
//  The command line, and a download

typedef struct {
    const char *url;
    const char *output;
    char digest[80]; //  "sha256:" + 64 lowercase hex, or ""
    zf_rec_http_header_t headers[ZF_GET_HEADERS_MAX];
    size_t header_count;
    char *parents[ZF_GET_PARENTS_ARG_MAX];
    size_t parent_count;
    const char *config_path;
    int64_t timeout_ms;
    int64_t idle_timeout_ms; //  0: none
    zf_get_progress_mode_t progress;
    bool verbose;
    bool copy; //  never a hard link of the cache file
} zf_get_options_t;

//  One download. Each group of fields says which file owns it: sets it and decides what it
//  means; the others read.
typedef struct {
    //  zfly-get.c: the run (the endpoints are found by zf_get_daemon.c's zf_get_route)
    const zf_get_options_t *options;
    const char *config_path;
    char *fetcher_endpoint;
    char *storage_endpoint;
    char *part_path; //  PATH.part

    //  zf_get_download.c: the reader, the loop, how the run ends, the task as the fetcher
    //  reports it, the progress shown
    zf_bus_t *bus;
    zloop_t *loop;
    zf_task_readers_t *readers;
    zf_task_reader_t *reader;
    bool done;
    int exit_code;
    bool locate; //  storage is on this host: pieces are copied from its files
    char task_id[72];
    uint64_t content_length, piece_count, finished_count;
    uint64_t bytes_from_source, bytes_from_parents;
    zf_get_progress_t progress;
    int64_t last_change_ms;
    bool announced;
    EVP_MD_CTX *sha;  //  over the content in order, for --digest (zf_get_link.c feeds it too)
    uint64_t written; //  bytes in PATH.part

    //  zf_get_output.c: PATH.part and how pieces are copied into it. fd is opened by
    //  zfly-get.c and reopened by zf_get_link.c when a link is abandoned; direct_fd, clone_ok
    //  and copy_range_ok are set up by zf_get_download.c when the run starts.
    int fd;
    int direct_fd;        //  PATH.part opened O_DIRECT, -1 when the filesystem cannot
    bool clone_ok;        //  FICLONERANGE has not failed yet (it needs a reflink filesystem)
    bool copy_range_ok;   //  copy_file_range has not failed yet
    uint8_t *copy_buffer; //  ZF_GET_COPY_BUFFER bytes, aligned, once a copy needs it

    //  zf_get_link.c: PATH as a hard link of the cache file
    int link_fd;       //  the cache file PATH is to be a hard link of, or -1
    bool link_decided; //  the first located piece decided whether to link
    char *link_path;   //  …the cache file's path, and its identity
    dev_t link_dev;
    ino_t link_ino;
} zf_get_t;

//  ---------------------------------------------------------------------------------------------
//  zf_get_daemon.c: where the daemon listens

//  Finds where ACTOR (fetcher, storage) of the daemon listens and adds a route to it.
//  Returns -1 on success, else the exit status, having said why.
int zf_get_route (zf_config_t *config, zf_node_t *node, const char *actor, bool insecure,
                  char **endpoint_p);
//  Whether reaching the fetcher or storage needs the node's certificate (a tcp:// endpoint).
bool zf_get_needs_cert (zf_config_t *config);
//  An ipc:// endpoint whose socket file does not exist has no daemon behind it.
bool zf_get_ipc_missing (const char *endpoint);
//  Says that no daemon answered at endpoint, and how to start one.
void zf_get_no_daemon (zf_get_t *self, const char *endpoint, const char *detail);

//  ---------------------------------------------------------------------------------------------
//  zf_get_download.c: the task reader's events and the loop

//  Reads the task into PATH.part (open) with the task reader; returns the exit status.
int zf_get_download (zf_get_t *self, zf_node_t *node, const char *actor_name);
//  A reader for the whole task, started: task.fetch sent. False when it could not be sent.
bool zf_get_begin (zf_get_t *self, zf_error_t *err);
//  Ends the loop with exit_code (the first call counts); fail says why on stderr first.
void zf_get_finish (zf_get_t *self, int exit_code);
void zf_get_fail (zf_get_t *self, int exit_code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
//  The progress display, once the task is announced (always when final).
void zf_get_show_progress (zf_get_t *self, bool final);

//  ---------------------------------------------------------------------------------------------
//  zf_get_output.c: PATH.part

//  Writes at offset of PATH.part; false after zf_get_fail, or (with source_gone given) with
//  it set when the source was mapped pages of a file cut short under us.
bool zf_get_write_all (zf_get_t *self, const uint8_t *data, size_t size, uint64_t offset,
                       bool *source_gone);
//  Copies a located piece from the cache file into PATH.part at its offset, cheapest first.
//  False when not done: *retry says the cache file let us down (the piece should come over
//  the bus); else zf_get_fail ran.
bool zf_get_copy_located (zf_get_t *self, const char *path, uint64_t offset, uint64_t size,
                          bool *retry);
//  Empties PATH.part: a new layout. False after zf_get_fail.
bool zf_get_start_over (zf_get_t *self);
//  Every piece is written: PATH.part checked, synced and renamed to PATH, and the run ends.
void zf_get_complete (zf_get_t *self);
//  The aligned copy buffer, allocated at first use.
uint8_t *zf_get_copy_buffer (zf_get_t *self);

//  ---------------------------------------------------------------------------------------------
//  zf_get_link.c: PATH as a hard link of the cache file

//  At the first located piece: link, or copy?
void zf_get_link_decide (zf_get_t *self, const char *cache_path);
//  A located piece while linking: hashed for --digest. False when linking was abandoned (a
//  new reader starts over), or after zf_get_fail.
bool zf_get_link_piece (zf_get_t *self, const char *path, uint64_t offset, uint64_t size);
//  PATH.part becomes a name of the cache file. False when it cannot (linking is abandoned:
//  a new reader copies it all), or after zf_get_fail.
bool zf_get_link_output (zf_get_t *self);

#endif
