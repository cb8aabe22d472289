#include <stdio.h>
int main(void)
{
    puts("landropic " LR_VERSION);
    return 0;
}
