/*
 * unit_main.c - the Check runner of build/test_unit.
 *
 * Convention: every tests/unit_<name>.c defines `Suite *<name>_suite(void)`; add it to the
 * extern list and to SUITES below. CK_FORK is left at Check's default (fork per test unless
 * the environment sets CK_FORK=no). Exit status 0 only when every test passed.
 */
#include <check.h>
#include <stdlib.h>

extern Suite *format_suite(void);
extern Suite *kernels_suite(void);
extern Suite *engine_suite(void);
extern Suite *image_suite(void);
extern Suite *npy_suite(void);
extern Suite *idx_suite(void);
extern Suite *cli_suite(void);
extern Suite *zoo_suite(void);
extern Suite *fuzzregress_suite(void);
extern Suite *pool_suite(void);

static Suite *(*const SUITES[])(void) = {
    format_suite, kernels_suite, engine_suite, image_suite,       npy_suite,
    idx_suite,    cli_suite,     zoo_suite,    fuzzregress_suite, pool_suite,
};

int main(void)
{
    SRunner *sr = srunner_create(NULL);
    for (size_t i = 0; i < sizeof SUITES / sizeof SUITES[0]; i++)
        srunner_add_suite(sr, SUITES[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
