/*  zf_task_reader_internal.h — the reader's state and the functions its parts call in each
    other; nothing outside the task reader includes it.

    zf_task_reader.h is one class in three files, cut by whom the reader speaks to:
    zf_task_reader.c is the reader's life, its requests and timer, and the pump that settles,
    delivers pieces in order and asks for more; zf_task_reader_fetcher.c is the fetcher's side
    (task.fetch, task.query, task.ended: the task's status and layout; piece.peek: the
    origin's bytes of a piece not stored yet); zf_task_reader_storage.c is storage's side
    (storage.stat, held until a piece lands; piece.read and piece.locate, and their error
    rules). The state below is the one reader all three work on. Each group of fields says
    which part owns it: sets it and decides what it means. zf_task_reader.c also clears the
    other parts' fields when a reader starts over (a new layout, pieces asked again), and any
    part sets `answered` when a reply brings word from the daemon. */
#ifndef ZF_TASK_READER_INTERNAL_H_INCLUDED
#define ZF_TASK_READER_INTERNAL_H_INCLUDED

#include "zf_task_id.h"
#include "zf_task_reader.h"
#include "zf_timers.h"

typedef enum {
    ZF_TASK_READER_PHASE_FETCH,  //  the first task.fetch is out: nothing is known yet
    ZF_TASK_READER_PHASE_FOLLOW, //  the fetcher knows the task: we watch storage and read pieces
    ZF_TASK_READER_PHASE_OVER,   //  DONE or FAILED was emitted
} zf_task_reader_phase_t;

//  One piece of the window: piece p uses slot p % ZF_TASK_READER_WINDOW_MAX.
typedef struct {
    zf_task_reader_t *reader;
    uint64_t piece;
    bool requested; //  a piece.locate or piece.read is out
    bool ready;     //  answered: path or frame holds it until the caller takes it
    bool retry;     //  storage was busy: asked again at the next wake
    int busy_count;
    zframe_t *frame;
    char *path;
    uint64_t file_offset;
} zf_task_reader_slot_t;

//  The set: made by zf_task_readers_new (zf_task_reader.c); zf_task_reader_fetcher.c files
//  readers in by_task once the fetcher names their task, and looks them up there when the
//  fetcher's task.ended comes.
struct zf_task_readers_s {
    zf_bus_t *bus;
    zf_timers_t *timers; //  readers end inside other handlers: their timers must not outlive them
    char *name;
    char *fetcher, *storage;
    zf_task_readers_options_t options;
    zhashx_t *by_task; //  task id -> zlistx_t of readers (not owned)
    zlistx_t *all;     //  every reader, let go or not (owned)
    //  zf_task_reader_storage.c: storage does not locate pieces for us: everyone reads over
    //  the bus
    bool locate_refused;
};

struct zf_task_reader_s {
    //  zf_task_reader.c: the reader's life, its caller, its requests and its timer
    zf_task_readers_t *set;
    void *handle;                //  in set->all
    zf_task_reader_fn *callback; //  NULL once let go
    void *arg;
    bool locate, wait_complete;
    int emitting; //  callbacks running: freeing waits for them
    int pending;  //  bus replies (and event deliveries) still due

    zf_msg_task_fetch_t fetch; //  the request (a copy), kept to ask again
    bool has_fetch;

    zf_task_reader_phase_t phase; //  FETCH to FOLLOW: zf_task_reader_fetcher.c; OVER: here
    bool answered;                //  the daemon has answered something (any part)
    bool fetch_pending, query_pending, stat_pending; //  each set by the part that sends it
    int timer_id;

    //  zf_task_reader_fetcher.c: the task as the fetcher names it, and its last word
    bool registered; //  in set->by_task under task_id
    char task_id[ZF_TASK_ID_SIZE + 1];
    zf_msg_task_status_t status;
    bool has_status;
    char state[17], error_code[33], error_message[1025];
    bool fetcher_complete;

    //  zf_task_reader_fetcher.c: the layout pieces are read with, fixed by the first status
    //  that states it
    bool layout_known;
    int layouts_given; //  LAYOUT events so far: a second one restarts
    uint64_t content_length, piece_length, piece_count;

    //  zf_task_reader_storage.c: storage's word, which pieces are finished
    //  (storage_complete is also set when the fetcher says the task is complete)
    uint8_t *bitmap;
    size_t bitmap_size;
    uint64_t stored_count;
    bool storage_complete;
    //  storage held the last storage.stat until there was news, or it brought news (or none
    //  was sent yet): the next may go at once; else it waits for poll_ms after the last
    bool stat_held;
    int64_t stat_sent_ms;

    //  zf_task_reader.c: the range being read, the window of pieces asked for (each slot's
    //  request and answer are zf_task_reader_storage.c's), and starting over, which the
    //  others ask for: refetch_wanted (a piece went missing: zf_task_reader_storage.c),
    //  restart_wanted (a new layout: zf_task_reader_fetcher.c); recheck is cleared by
    //  zf_task_reader_fetcher.c when its task.query goes out
    bool reading, paused;
    uint64_t next_request, next_deliver, read_end;
    size_t window;
    zf_task_reader_slot_t slots[ZF_TASK_READER_WINDOW_MAX];
    bool refetch_wanted, restart_wanted;
    bool recheck; //  a piece went missing while the task ran: how is it? (task.query)

    //  zf_task_reader_fetcher.c: streaming the origin's bytes (piece.peek) of the piece to
    //  deliver next while storage does not hold it yet: part_from bytes of piece part_piece
    //  went to the caller; an answer that came while paused waits in part_frame.
    bool peek; //  the caller asked for it (zf_task_reader.c); off when the fetcher cannot
    bool peek_pending;
    uint64_t part_piece, part_from;
    zframe_t *part_frame;
    uint64_t part_frame_from;
    //  The first peek goes out with task.fetch, before the layout is known (a task named by
    //  its digest, whose id the reader can compute): piece 0's first bytes, kept here until
    //  the caller reads from piece 0, or dropped (zf_task_reader_peek_first).
    char first_task_id[ZF_TASK_ID_SIZE + 1];
    zframe_t *first_frame;
    bool first_complete;
    bool no_peek; //  the fetcher does not fill piece no_peek_piece: storage gives it
    uint64_t no_peek_piece;
    int refetches; //  zf_task_reader_storage.c: pieces asked again after they went missing
};

//  ---------------------------------------------------------------------------------------------
//  zf_task_reader.c: life, events, requests, the timer, the window, the pump

//  The reader a reply (or an event delivery) was due to, or NULL when it was let go: then it
//  is freed once nothing more is due.
zf_task_reader_t *zf_task_reader_reply (void *arg);

//  Calls the caller; false when it let the reader go meanwhile (the reader may be freed: the
//  caller returns at once). taken: the callback's answer, for PIECE.
bool zf_task_reader_emit (zf_task_reader_t *self, zf_task_reader_event_t *event, bool *taken);

//  FAILED, once: failure with code (a task error or reply code) and a message.
void zf_task_reader_fail (zf_task_reader_t *self, zf_task_reader_failure_t failure,
                          const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
//  FAILED, UNREACHABLE: a request that failed locally (ZF_E_TIMEOUT, ZF_E_UNREACHABLE, a full
//  queue).
void zf_task_reader_fail_bus (zf_task_reader_t *self, zf_status_t status, const zf_error_t *err,
                              const char *request, const char *actor);

//  How patient a request is (zf_bus.h), and a request sent with it: false, FAILED emitted,
//  when it could not be sent; pending_flag is set while it is out.
zf_bus_call_t zf_task_reader_call (zf_task_reader_t *self);
bool zf_task_reader_request (zf_task_reader_t *self, const char *to, const zf_msg_desc_t *desc,
                             const void *body, zf_bus_call_t call, zf_bus_reply_fn *callback,
                             void *arg, bool *pending_flag);

//  The timer: busy retries, a storage that does not hold storage.stat, a query asked again.
void zf_task_reader_wake_after (zf_task_reader_t *self, int64_t delay_ms);

//  The window of pieces asked for ahead of the caller, sized for how pieces come (located or
//  read); whether it has room; whether storage holds a piece; a piece's size.
void zf_task_reader_set_window (zf_task_reader_t *self);
bool zf_task_reader_window_has_room (const zf_task_reader_t *self);
bool zf_task_reader_stored (const zf_task_reader_t *self, uint64_t piece);
uint64_t zf_task_reader_piece_size (const zf_task_reader_t *self, uint64_t piece);

//  Settles, delivers in order, asks for more, finishes: after anything changed.
void zf_task_reader_pump (zf_task_reader_t *self);

//  ---------------------------------------------------------------------------------------------
//  zf_task_reader_fetcher.c: the fetcher's word and the origin's bytes

bool zf_task_reader_send_fetch (zf_task_reader_t *self);
void zf_task_reader_send_query (zf_task_reader_t *self);
void zf_task_reader_on_fetch (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err, void *arg);
//  task.ended from the fetcher (arg: the set).
void zf_task_reader_on_ended (zf_bus_t *bus, zf_bus_msg_t *event, void *arg);
//  Takes the layout the last status states, once it states one; false when the reader stopped.
bool zf_task_reader_take_layout (zf_task_reader_t *self);
//  piece.peek for the piece to deliver next, when storage does not hold it.
void zf_task_reader_peek (zf_task_reader_t *self);
void zf_task_reader_peek_first (zf_task_reader_t *self);
//  Hands the caller the bytes a peek brought; false when the reader stopped.
bool zf_task_reader_deliver_partial (zf_task_reader_t *self);

//  ---------------------------------------------------------------------------------------------
//  zf_task_reader_storage.c: storage's word and the pieces

//  storage.stat when that is what the reader waits for.
void zf_task_reader_stat (zf_task_reader_t *self);
//  piece.locate or piece.read for the slot's piece; false when it could not be sent.
bool zf_task_reader_request_piece (zf_task_reader_t *self, zf_task_reader_slot_t *slot);

#endif
