/*  zf_store_test.c — the selftest of the store (zf_store.h): slots and commits, torn records,
    quarantine, a cache from before the slots, a task removed and created again while its jobs
    run, and the durable mode.

    Separate from zf_store.c because it reads the slots on disk itself (zf_store_internal.h),
    as only a test would. */
#include "storage/zf_store_internal.h"
#include "storage/zf_store_task.h"
#include <fcntl.h>
#include <unistd.h>

#include "zf_msgs.h"

//  The newest record on disk, decoded: which pieces it claims (NULL: no valid slot).
static zf_store_task_t *s_test_on_disk (zf_store_t *self, const char *id, int *slot_p)
{
    char *data_path = zf_store_task_path (self, id, "data");
    struct stat info;
    ZF_ASSERT (stat (data_path, &info) == 0);
    zf_free (data_path);
    zf_store_task_t *best = NULL;
    uint64_t best_sequence = 0;
    for (int slot = 0; slot < 2; slot++) {
        uint64_t sequence = 0;
        bool unused;
        zf_error_t err;
        zf_store_task_t *task =
            zf_store_load_slot (self, id, slot, (uint64_t) info.st_size, &sequence, &unused, &err);
        if (task && sequence > best_sequence) {
            zf_store_task_destroy (&best);
            best = task;
            best_sequence = sequence;
            if (slot_p)
                *slot_p = slot;
        } else
            zf_store_task_destroy (&task);
    }
    return best;
}

//  A piece written the way the actor does it, all steps on this thread.
static zf_status_t s_test_write (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                 uint8_t fill)
{
    size_t size = (size_t) zf_store_piece_size (task, piece);
    zframe_t *bytes = zframe_new (NULL, size);
    memset (zframe_data (bytes), fill, size);
    zf_store_write_t write;
    zf_store_write_prepare (self, task, piece, &bytes, NULL, &write);
    zf_store_write_run (&write.io);
    zf_status_t status = zf_store_write_finish (self, task, &write, NULL, NULL);
    zframe_destroy (&write.bytes);
    zf_store_write_clear (&write);
    return status;
}

static void s_test_flip (zf_store_t *self, const char *id, const char *file, off_t offset)
{
    char *path = zf_store_task_path (self, id, file);
    int fd = open (path, O_RDWR | O_CLOEXEC);
    uint8_t byte = 0;
    ZF_ASSERT (fd >= 0 && pread (fd, &byte, 1, offset) == 1);
    byte ^= 0x20;
    ZF_ASSERT (pwrite (fd, &byte, 1, offset) == 1 && close (fd) == 0);
    zf_free (path);
}

static void s_test_check_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                uint8_t fill)
{
    zmsg_t *frames = NULL;
    zf_error_t err;
    //  In one frame and in the smallest parts a reader may ask for: the same bytes.
    for (uint64_t frame_max = 0; frame_max <= 1; frame_max++) {
        ZF_ASSERT (zf_store_read_piece (self, task, piece, frame_max, &frames, &err)
                   == ZF_STORE_READ_OK);
        uint64_t size = 0;
        for (zframe_t *frame = zmsg_first (frames); frame; frame = zmsg_next (frames)) {
            ZF_ASSERT (frame_max == 0 || zframe_size (frame) <= ZF_STORE_FRAME_MIN);
            for (size_t index = 0; index < zframe_size (frame); index++)
                ZF_ASSERT (zframe_data (frame)[index] == fill);
            size += zframe_size (frame);
        }
        ZF_ASSERT (size == zf_store_piece_size (task, piece));
        zmsg_destroy (&frames);
    }
}

void zf_store_test (bool verbose)
{
    printf (" * zf_store: ");
    char dir[] = "/tmp/zf-store-test-XXXXXX";
    ZF_ASSERT (mkdtemp (dir));
    zf_error_t err;
    zf_store_t *store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT (store);
    char id[ZF_STORE_ID_LEN + 1];
    memset (id, 'a', ZF_STORE_ID_LEN);
    id[ZF_STORE_ID_LEN] = '\0';
    zf_store_spec_t spec = {
        .id = id, .url = "http://origin/a", .content_length = 32768, .piece_length = 8192};
    zf_store_task_t *task;
    ZF_ASSERT (zf_store_create (store, &spec, 1000, &task, &err) == ZF_OK);

    //  The first record (sequence 1, nothing claimed) is in slot 1; slot 0 exists, empty.
    int slot = -1;
    zf_store_task_t *disk = s_test_on_disk (store, id, &slot);
    ZF_ASSERT (disk && slot == 1 && disk->finished_count == 0);
    zf_store_task_destroy (&disk);
    char *slot0 = zf_store_task_path (store, id, "meta.0");
    struct stat info;
    ZF_ASSERT (stat (slot0, &info) == 0 && info.st_size == 0);

    //  A written piece is finished (served) and pending; a commit claims it, in the other slot.
    ZF_ASSERT (s_test_write (store, task, 0, 0x10) == ZF_OK);
    ZF_ASSERT (zf_store_is_finished (task, 0) && !zf_store_is_claimed (task, 0));
    s_test_check_piece (store, task, 0, 0x10);
    ZF_ASSERT (zf_store_needs_commit (task));
    zf_store_commit_t commit;
    ZF_ASSERT (zf_store_commit_begin (store, task, &commit, &err) == ZF_OK);
    //  A piece written while the commit runs is not in its record: pending still after it.
    ZF_ASSERT (s_test_write (store, task, 1, 0x11) == ZF_OK);
    zf_store_commit_run (&commit);
    ZF_ASSERT (zf_store_commit_end (store, zf_store_commit_task (store, &commit), &commit)
               == ZF_OK);
    ZF_ASSERT (zf_store_is_claimed (task, 0) && !zf_store_is_claimed (task, 1));
    disk = s_test_on_disk (store, id, &slot);
    ZF_ASSERT (disk && slot == 0 && disk->finished_count == 1);
    zf_store_task_destroy (&disk);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK); //  sequence 3, slot 1: 0 and 1
    ZF_ASSERT (zf_store_is_claimed (task, 1));
    ZF_ASSERT (s_test_write (store, task, 2, 0x12) == ZF_OK);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK); //  sequence 4, slot 0: 0, 1, 2

    //  The newest record torn (a byte of its payload, or its tail cut): the older one counts,
    //  and it claims less. A restart over the torn slot writes the next record into it.
    s_test_flip (store, id, "meta.0", 40);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    task = zf_store_find (store, id);
    ZF_ASSERT (task && task->finished_count == 2 && task->meta_sequence == 3);
    ZF_ASSERT (zf_store_is_claimed (task, 1) && !zf_store_is_finished (task, 2));
    s_test_check_piece (store, task, 1, 0x11);
    ZF_ASSERT (s_test_write (store, task, 2, 0x12) == ZF_OK);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK);
    disk = s_test_on_disk (store, id, &slot);
    ZF_ASSERT (disk && slot == 0 && disk->finished_count == 3);
    zf_store_task_destroy (&disk);
    char *slot1 = zf_store_task_path (store, id, "meta.1");
    ZF_ASSERT (stat (slot1, &info) == 0 && truncate (slot1, info.st_size - 1) == 0);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT ((task = zf_store_find (store, id)) && task->finished_count == 3);

    //  Both slots bad: nothing can be trusted, the directory is quarantined.
    s_test_flip (store, id, "meta.0", 30);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT (!zf_store_find (store, id) && zf_store_quarantined (store) == 1);

    //  A cache from before the slots: its meta file is read once and moved into a slot.
    ZF_ASSERT (zf_store_create (store, &spec, 1000, &task, &err) == ZF_OK);
    ZF_ASSERT (s_test_write (store, task, 3, 0x13) == ZF_OK);
    size_t size = 0;
    uint8_t *record = zf_store_task_encode (task, &size);
    char *legacy = zf_store_task_path (store, id, ZF_STORE_META_LEGACY);
    int fd = open (legacy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    ZF_ASSERT (fd >= 0 && write (fd, record, size) == (ssize_t) size && close (fd) == 0);
    zf_free (record);
    ZF_ASSERT (unlink (slot0) == 0 && unlink (slot1) == 0);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    task = zf_store_find (store, id);
    ZF_ASSERT (task && task->finished_count == 1 && zf_store_is_claimed (task, 3));
    s_test_check_piece (store, task, 3, 0x13);
    ZF_ASSERT (access (legacy, F_OK) != 0 && access (slot0, F_OK) == 0);
    disk = s_test_on_disk (store, id, NULL);
    ZF_ASSERT (disk && disk->finished_count == 1);
    zf_store_task_destroy (&disk);

    //  Removed and created again while a write is on its way: the old generation's write
    //  lands in a range the new task has not written (same length) and is claimed by
    //  nobody, or finds a data file of another length and writes nothing.
    zframe_t *bytes = zframe_new (NULL, 8192);
    memset (zframe_data (bytes), 0x66, 8192);
    zf_store_write_t stale;
    zf_store_write_prepare (store, task, 1, &bytes, NULL, &stale);
    zf_store_commit_t stale_commit;
    ZF_ASSERT (zf_store_commit_begin (store, task, &stale_commit, &err) == ZF_OK);
    zf_store_remove (store, &task);
    zf_store_spec_t again = spec;
    again.piece_length = 16384;
    ZF_ASSERT (zf_store_create (store, &again, 2000, &task, &err) == ZF_OK);
    zf_store_write_run (&stale.io);
    zf_store_commit_run (&stale_commit); //  into the old, unlinked slot it opened
    ZF_ASSERT (stale.status == ZF_OK && zf_store_write_task (store, &stale) == NULL);
    ZF_ASSERT (zf_store_commit_task (store, &stale_commit) == NULL);
    zf_store_commit_end (store, NULL, &stale_commit);
    zframe_destroy (&stale.bytes);
    zf_store_write_clear (&stale);
    ZF_ASSERT (task->finished_count == 0);
    disk = s_test_on_disk (store, id, NULL);
    ZF_ASSERT (disk && disk->finished_count == 0 && disk->piece_length == 16384);
    zf_store_task_destroy (&disk);
    ZF_ASSERT (s_test_write (store, task, 0, 0x20) == ZF_OK); //  over the stray bytes
    s_test_check_piece (store, task, 0, 0x20);
    bytes = zframe_new (NULL, 16384);
    zf_store_write_prepare (store, task, 1, &bytes, NULL, &stale);
    zf_store_remove (store, &task);
    again.content_length = 50000;
    ZF_ASSERT (zf_store_create (store, &again, 3000, &task, &err) == ZF_OK);
    zf_store_write_run (&stale.io); //  finds a file of another length: writes nothing
    ZF_ASSERT (stale.status == ZF_E_REFUSED && strstr (stale.err.message, "changed under storage"));
    zframe_destroy (&stale.bytes);
    zf_store_write_clear (&stale);

    //  Durable: commits fdatasync the data and the record; the claims read back the same.
    zf_store_set_durable (store, true);
    ZF_ASSERT (s_test_write (store, task, 2, 0x22) == ZF_OK);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK && zf_store_is_claimed (task, 2));
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT ((task = zf_store_find (store, id)) && task->finished_count == 1);
    s_test_check_piece (store, task, 2, 0x22);
    zf_store_destroy (&store);

    zf_free (slot0);
    zf_free (slot1);
    zf_free (legacy);
    char *command = zf_asprintf ("rm -rf '%s'", dir);
    ZF_ASSERT (system (command) == 0);
    zf_free (command);
    if (verbose)
        printf ("(slots, torn records, legacy, generations, durable) ");
    printf ("OK\n");
}
