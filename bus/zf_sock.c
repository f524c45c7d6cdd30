/*  zf_sock.c — non-blocking multipart send. */
#include "zf_sock.h"

zf_status_t zf_sock_send_nowait (zsock_t *sock, zmsg_t **msg_p)
{
    ZF_ASSERT (msg_p && *msg_p);
    zmsg_t *msg = *msg_p;
    *msg_p = NULL;
    zf_status_t status = ZF_OK;
    size_t remaining = zmsg_size (msg);
    bool first = true;
    zframe_t *frame;
    while ((frame = zmsg_pop (msg))) {
        remaining--;
        int flags = ZFRAME_DONTWAIT | (remaining ? ZFRAME_MORE : 0);
        if (zframe_send (&frame, sock, flags) != 0) {
            zframe_destroy (&frame);
            //  A failure after the first frame cannot be a full queue (see above).
            status = first && zmq_errno () == EAGAIN ? ZF_E_OVERLOAD
                     : zmq_errno () == EHOSTUNREACH  ? ZF_E_OVERLOAD
                                                     : ZF_E_IO;
            break;
        }
        first = false;
    }
    zmsg_destroy (&msg);
    return status;
}
