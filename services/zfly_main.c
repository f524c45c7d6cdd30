/* placeholder: the daemon lands with services/ */
#include "zf_prelude.h"
int main (void)
{
    return 0;
}
