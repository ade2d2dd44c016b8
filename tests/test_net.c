#include "harness.h"
int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    test_ran_++;
    return TEST_MAIN_END();
}
