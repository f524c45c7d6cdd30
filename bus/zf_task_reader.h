/*  zf_task_reader.h — reads a task as it arrives: the one client of the fetcher and storage
    that the proxy's P2P path and zfly-get share.

    The conversation, written once here:
      1. task.fetch to the fetcher: starts the task, or joins it, or finds it complete;
      2. storage.stat with wait_ms (a long poll, bitmap only): storage holds the question
         until a piece lands, the task is opened (its layout is then known to the fetcher), it
         completes, or wait_ms passes; a storage that answers at once is asked every poll_ms;
      3. piece.locate (the piece's file and offset, for readers on this host that copy or
         sendfile the bytes themselves) or piece.read (the bytes, as a frame), for the pieces
         storage holds, in a window ahead of the one the caller takes next;
         and, for a streaming reader (zf_task_reader_set_peek), piece.peek to the fetcher for
         the next piece while storage does not hold it: the origin's bytes as they arrive, a
         parent's piece once checked ("not_found": read it from storage when it is there);
         a streaming reader of a task named by its digest sends its first peek (piece 0)
         right behind step 1, before the length is known, and keeps what it brings until
         the layout (zf_task_reader_peek_first);
      4. the fetcher's word on how the task ended: its task.ended event (published when a
         task completes or fails), else task.query when storage tells of an opened task whose
         layout we lack, of completion, or has been quiet for a whole long poll.
    The caller gets events (zyre's zyre_node is the model): STATUS when the fetcher speaks,
    LAYOUT once the length and piece length are known, PIECE for each piece of the range asked
    for, in order, then DONE, or FAILED once.

    One set of error rules for every reader:
      - task.fetch refused (an error reply): FAILED, failure REFUSED with the fetcher's code
        (ZF_CODE_DENIED: the origin refused this caller's credentials);
      - task.query "not_found" (the fetcher forgot the task, restarted): task.fetch again;
      - a task.status or task.ended "failed": FAILED, failure TASK with the task's error code
        ("source", "digest", …);
      - storage.stat "not_found": the task is not opened yet, or was just removed: ask again;
        any other error reply: FAILED, failure STORAGE;
      - piece answers: "busy" (and "elsewhere": a seed's storage gave the piece to another
        node a moment ago): asked again after BUSY_RETRY_MS, at most BUSY_RETRIES_MAX times;
        "corrupt", "not_finished", "not_found" (storage lost the piece): once every read in
        flight has ended, task.fetch again and read on from the first piece not yet taken,
        at most REFETCH_MAX times per reader; piece.locate refused ("forbidden": storage on
        another host; "unknown_type": a storage without piece.locate): every reader of this
        set reads over the bus from then on, said once in the log; anything else, an answer
        for another piece, or a piece from another host (tcp://) whose bytes do not match its
        SHA-256: FAILED, failure STORAGE (or PROTOCOL);
      - a request that times out or cannot be sent: FAILED, failure UNREACHABLE, naming the
        request, the actor and whether it had answered before;
      - a layout that changes after it was given (the origin's content changed under a stale
        copy): once the reads in flight end, LAYOUT again with restart set; the caller starts
        over or gives up.

    Readers of one actor share a zf_task_readers_t: it owns the one subscription to the
    fetcher's events and the readers a caller let go while bus replies were still due (the bus
    has no cancel; a reader is freed once its last reply came, or with the set). Destroy the
    set after the bus: the bus drops unanswered calls, the set frees their readers. A reader
    may be destroyed from inside its own event callback. Not thread-safe: one actor owns it. */
#ifndef ZF_TASK_READER_H_INCLUDED
#define ZF_TASK_READER_H_INCLUDED

#include "zf_bus.h"
#include "zf_msgs.h"

typedef struct zf_task_readers_s zf_task_readers_t;
typedef struct zf_task_reader_s zf_task_reader_t;

typedef struct {
    const char *fetcher;        //  actor names (resolved by the node)
    const char *storage;        //
    int64_t timeout_ms;         //  requests until the daemon first answered; 0: the node's
    int64_t later_timeout_ms;   //  once it answered (it may be busy); 0: timeout_ms
    int64_t read_timeout_ms;    //  one piece.read or piece.locate; 0: the node's
    int64_t poll_ms;            //  storage.stat interval for a storage that does not hold it
    int64_t stat_wait_ms;       //  how long storage may hold storage.stat
    uint64_t read_window_bytes; //  pieces held in memory ahead of the caller, read over the bus
    uint64_t read_window_min;   //  …but at least this many pieces
    uint64_t locate_window;     //  pieces located ahead of the caller (they hold no memory)
} zf_task_readers_options_t;

//  The most pieces any window may hold.
#define ZF_TASK_READER_WINDOW_MAX 8

typedef enum {
    ZF_TASK_READER_STATUS, //  the fetcher's word: status (progress, totals)
    ZF_TASK_READER_LAYOUT, //  length and piece length are known; call zf_task_reader_read
    ZF_TASK_READER_PIECE,  //  the next piece of the range, in order
    ZF_TASK_READER_DONE,   //  every piece of the range was taken (and, if asked, the task is
                           //  complete); status holds the fetcher's last word, if any
    ZF_TASK_READER_FAILED, //  nothing more comes
} zf_task_reader_event_type_t;

typedef enum {
    ZF_TASK_READER_REFUSED,     //  the fetcher refused task.fetch (code: its error code)
    ZF_TASK_READER_TASK,        //  the task failed (code: "source", "digest", …)
    ZF_TASK_READER_STORAGE,     //  storage could not serve a piece or the task
    ZF_TASK_READER_PROTOCOL,    //  an answer that contradicts the question
    ZF_TASK_READER_UNREACHABLE, //  a request timed out or could not be sent
} zf_task_reader_failure_t;

typedef struct {
    zf_task_reader_event_type_t type;
    //  STATUS, DONE (may be NULL), FAILED with TASK: the fetcher's last task.status
    const zf_msg_task_status_t *status;
    //  LAYOUT: restart is set when the layout changed after an earlier LAYOUT: nothing read
    //  before holds; the caller starts over (and calls zf_task_reader_read again) or gives up
    uint64_t content_length, piece_length, piece_count;
    bool restart;
    //  PIECE: content [offset, offset + size) of piece `piece`; either located (path, the
    //  bytes at file_offset of that file, checked by storage just now) or in *frame (the
    //  caller may take the frame: zmsg-style, NULL it)
    uint64_t piece, offset, size;
    const char *path;
    uint64_t file_offset;
    zframe_t **frame;
    //  the bytes are the origin's, passed on by the fetcher while it fills the piece (peek):
    //  not verified yet; the piece's later events start where this one ended (or the whole
    //  piece again, from storage: the caller skips what it has)
    bool partial;
    //  FAILED
    zf_task_reader_failure_t failure;
    zf_task_error_t task_error; //  TASK: why the task failed (ZF_TASK_ERROR_SOURCE, …)
    zf_code_t reply_code;       //  REFUSED, STORAGE: the error reply's code (ZF_CODE_DENIED, …)
    zf_status_t bus_status;     //  UNREACHABLE: ZF_E_TIMEOUT, ZF_E_UNREACHABLE, ZF_E_OVERLOAD
    const char *code;    //  the same as a word, for messages ("source", "busy", "timeout", …)
    const char *message; //  what happened, in words
    const char *request; //  UNREACHABLE: "task.fetch", "storage.stat", …
    const char *actor;   //  UNREACHABLE: the actor the request went to
    bool answered;       //  UNREACHABLE: the daemon had answered this reader before
} zf_task_reader_event_t;

//  For PIECE, the return value says whether the caller took the piece: false means it could
//  not use the located file (gone, unreadable): the reader reads this piece and the rest over
//  the bus. Other events ignore it.
typedef bool (zf_task_reader_fn) (zf_task_reader_t *reader, const zf_task_reader_event_t *event,
                                  void *arg);

//  A set of readers on an actor's bus and loop. name prefixes log lines (the actor's name).
zf_task_readers_t *zf_task_readers_new (zf_bus_t *bus, zloop_t *loop, const char *name,
                                        const zf_task_readers_options_t *options);
void zf_task_readers_destroy (zf_task_readers_t **self_p);

//  A reader for one request, not started. locate: this caller copies pieces from storage's
//  files (on the same host) rather than receiving their bytes. wait_complete: DONE waits for
//  the fetcher to say the task is complete (it checked the content digest), not only for the
//  pieces of the range.
zf_task_reader_t *zf_task_reader_new (zf_task_readers_t *set, bool locate, bool wait_complete,
                                      zf_task_reader_fn *callback, void *arg);
//  Lets the reader go: no more events; it is freed once no bus reply is due.
void zf_task_reader_destroy (zf_task_reader_t **self_p);

//  Sends task.fetch (copied: url, digest, tag, application, headers, parents). Returns false
//  (and emits nothing) when the request could not even be sent; err says why.
bool zf_task_reader_start (zf_task_reader_t *self, const zf_msg_task_fetch_t *fetch,
                           zf_error_t *err);

//  Reads pieces [first, first + count) once the layout is known, in order (call from the
//  LAYOUT event or later). count 0 reads nothing; DONE follows when wait_complete allows.
void zf_task_reader_read (zf_task_reader_t *self, uint64_t first, uint64_t count);

//  From now on DONE waits for the fetcher's word that the task is complete, as if the reader
//  had been made with wait_complete (safe inside an event callback).
void zf_task_reader_wait_complete (zf_task_reader_t *self);

//  Streams the origin's bytes: a piece storage does not hold yet is taken from the fetcher
//  while it fills it (piece.peek, PIECE events with partial set), not once it is stored.
//  For a fetcher in this process (the proxy's). Call before zf_task_reader_start.
void zf_task_reader_set_peek (zf_task_reader_t *self, bool peek);

//  A paused reader keeps its window of pieces requested but delivers none until resumed.
void zf_task_reader_pause (zf_task_reader_t *self, bool paused);

//  The task id, once the fetcher named it ("" before).
const char *zf_task_reader_task_id (zf_task_reader_t *self);

#endif
