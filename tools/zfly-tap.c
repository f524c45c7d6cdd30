/* placeholder: zfly-tap lands with the tap */
#include "zf_prelude.h"
int main (void)
{
    return 0;
}
