/* placeholder: the echo actor lands with the bus */
#include "zf_prelude.h"
int zf_echo_placeholder (void);
int zf_echo_placeholder (void)
{
    return 0;
}
