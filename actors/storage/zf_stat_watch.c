/*  zf_stat_watch.c — storage.stat requests held until their task has news (zf_stat_watch.h).

    A flat array: it holds one request per child per task being downloaded from this node
    (tens, a few hundred at most), and every operation is a scan, cheaper at that size than
    any index. */
#include "zf_stat_watch.h"
#include "storage/zf_store.h"

#define WATCH_MAX 4096 //  held at once; a request beyond it pushes the oldest out, answered

typedef struct {
    zf_bus_return_t ret;
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t known_finished;
    bool bitmap_only;
    int64_t deadline_ms;
} watch_t;

struct zf_stat_watch_s {
    watch_t *items; //  oldest first
    size_t count;
    zf_stat_watch_answer_fn answer;
    void *arg;
};

zf_stat_watch_t *zf_stat_watch_new (zf_stat_watch_answer_fn answer, void *arg)
{
    zf_stat_watch_t *self = zf_calloc (1, sizeof *self);
    self->items = zf_calloc (WATCH_MAX, sizeof *self->items);
    self->answer = answer;
    self->arg = arg;
    return self;
}

void zf_stat_watch_destroy (zf_stat_watch_t **self_p)
{
    if (!*self_p)
        return;
    zf_free ((*self_p)->items);
    zf_free (*self_p);
    *self_p = NULL;
}

//  Takes item index out (keeping the order) and answers it. The answer may not call back
//  into the watch, so the array is consistent before it runs.
static void s_answer_at (zf_stat_watch_t *self, size_t index)
{
    watch_t taken = self->items[index];
    memmove (&self->items[index], &self->items[index + 1],
             (self->count - index - 1) * sizeof *self->items);
    self->count--;
    self->answer (&taken.ret, taken.task_id, taken.bitmap_only, self->arg);
}

void zf_stat_watch_add (zf_stat_watch_t *self, const zf_bus_return_t *ret, const char *task_id,
                        uint64_t known_finished, bool bitmap_only, int64_t deadline_ms)
{
    if (self->count == WATCH_MAX)
        s_answer_at (self, 0);
    watch_t *item = &self->items[self->count++];
    item->ret = *ret;
    zf_strlcpy (item->task_id, task_id, sizeof item->task_id);
    item->known_finished = known_finished;
    item->bitmap_only = bitmap_only;
    item->deadline_ms = deadline_ms;
}

void zf_stat_watch_notify (zf_stat_watch_t *self, const char *task_id, uint64_t finished_count)
{
    size_t index = 0;
    while (index < self->count) {
        watch_t *item = &self->items[index];
        if (streq (item->task_id, task_id)
            && (item->known_finished == ZF_STAT_WATCH_ABSENT
                || finished_count > item->known_finished))
            s_answer_at (self, index);
        else
            index++;
    }
}

int64_t zf_stat_watch_expire (zf_stat_watch_t *self, int64_t now_ms)
{
    int64_t earliest = -1;
    size_t index = 0;
    while (index < self->count) {
        int64_t deadline = self->items[index].deadline_ms;
        if (deadline <= now_ms) {
            s_answer_at (self, index);
            continue;
        }
        if (earliest < 0 || deadline < earliest)
            earliest = deadline;
        index++;
    }
    return earliest;
}

size_t zf_stat_watch_size (zf_stat_watch_t *self)
{
    return self->count;
}

// ---- selftest ----------------------------------------------------------------------------------

typedef struct {
    char answered[8][ZF_STORE_ID_LEN + 1];
    uint64_t ids[8];
    size_t count;
} test_log_t;

static void s_test_answer (const zf_bus_return_t *ret, const char *task_id, bool bitmap_only,
                           void *arg)
{
    test_log_t *log = arg;
    ZF_ASSERT (log->count < 8);
    ZF_ASSERT (bitmap_only == (ret->id == 2)); //  what was asked comes back
    log->ids[log->count] = ret->id;
    zf_strlcpy (log->answered[log->count++], task_id, ZF_STORE_ID_LEN + 1);
}

void zf_stat_watch_test (bool verbose)
{
    (void) verbose;
    test_log_t log = {0};
    zf_stat_watch_t *watch = zf_stat_watch_new (s_test_answer, &log);
    zf_bus_return_t ret = {.id = 1};
    zf_stat_watch_add (watch, &ret, "aa", 3, false, 1000);
    ret.id = 2;
    zf_stat_watch_add (watch, &ret, "bb", 0, true, 500);
    ret.id = 3;
    zf_stat_watch_add (watch, &ret, "aa", 5, false, 2000);
    ZF_ASSERT (zf_stat_watch_size (watch) == 3);

    //  No news for anyone: nothing answered.
    zf_stat_watch_notify (watch, "aa", 3);
    ZF_ASSERT (log.count == 0);
    //  News for the first "aa" only (4 > 3, not > 5).
    zf_stat_watch_notify (watch, "aa", 4);
    ZF_ASSERT (log.count == 1 && log.ids[0] == 1);
    //  The deadline of "bb" passes; "aa" (id 3) still waits and its deadline is the earliest.
    ZF_ASSERT (zf_stat_watch_expire (watch, 600) == 2000);
    ZF_ASSERT (log.count == 2 && log.ids[1] == 2 && streq (log.answered[1], "bb"));
    //  The task goes away: the rest is answered.
    zf_stat_watch_notify (watch, "aa", UINT64_MAX);
    ZF_ASSERT (log.count == 3 && log.ids[2] == 3);
    ZF_ASSERT (zf_stat_watch_size (watch) == 0 && zf_stat_watch_expire (watch, 0) == -1);

    //  Waiting for a task to exist: its creation (0 pieces) answers.
    log.count = 0;
    ret.id = 4;
    zf_stat_watch_add (watch, &ret, "dd", ZF_STAT_WATCH_ABSENT, false, 1000);
    zf_stat_watch_notify (watch, "dd", 0);
    ZF_ASSERT (log.count == 1 && log.ids[0] == 4);

    //  Full: the oldest is answered to make room.
    log.count = 0;
    for (uint64_t id = 0; id <= WATCH_MAX; id++) {
        ret.id = id;
        zf_stat_watch_add (watch, &ret, "cc", 0, id == 2, 1000);
        if (id == WATCH_MAX)
            ZF_ASSERT (log.count == 1 && log.ids[0] == 0);
    }
    ZF_ASSERT (zf_stat_watch_size (watch) == WATCH_MAX);
    zf_stat_watch_destroy (&watch);
    zf_stat_watch_destroy (&watch); //  twice is harmless
}
