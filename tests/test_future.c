#include "cogent.h"
#include "harness.h"
static void test_placeholder(void) {}
int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_placeholder);
    return TEST_MAIN_END();
}
