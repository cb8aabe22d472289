/*
 * test_ignore.c - .landropicignore parsing and matching.
 */
#include "ignore/ignore.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- helpers ------------------------------------------------------------------------------ */

static struct lr_ignore *parse_ok(const char *text, size_t len)
{
    struct lr_ignore *ig = NULL;
    struct lr_err err = {0};
    int rc = lr_ignore_parse(text, len, &ig, &err);
    if (rc != 0)
        fail_msg("parse of \"%s\" failed: %s", text, err.msg);
    assert_non_null(ig);
    return ig;
}

static bool match_s(const struct lr_ignore *ig, const char *path, bool is_dir)
{
    return lr_ignore_match(ig, path, strlen(path), is_dir);
}

/* Work bound every match must respect (see ignore.h "Cost"). */
static uint64_t step_bound(size_t path_len, size_t text_len, size_t nrules)
{
    return 4 * ((uint64_t)path_len + 2) * ((uint64_t)text_len + 2 * nrules + 2);
}

/* --- feature table -------------------------------------------------------------------------- */

struct mcase {
    const char *rules;
    const char *path;
    bool is_dir;
    bool want;
};

static const struct mcase cases[] = {
    /* plain names match at any depth, and everything under a matched directory */
    {"foo", "foo", false, true},
    {"foo", "a/b/foo", false, true},
    {"foo", "foo/bar", false, true},
    {"foo", "foobar", false, false},
    {"foo", "afoo", false, false},
    {"foo", "Foo", false, false},
    {"", "foo", false, false},
    {"\n\n   \n", "foo", false, false},
    /* comments and escapes */
    {"#foo", "#foo", false, false},
    {"# comment\nfoo", "foo", false, true},
    {"\\#foo", "#foo", false, true},
    {"\\!important", "!important", false, true},
    {"\\!important", "important", false, false},
    {" #x", " #x", false, true},
    {"a\\*b", "a*b", false, true},
    {"a\\*b", "axb", false, false},
    {"a\\?", "a?", false, true},
    {"a\\?", "ab", false, false},
    {"\\[x]", "[x]", false, true},
    {"\\a", "a", false, true},
    /* trailing spaces */
    {"foo   ", "foo", false, true},
    {"foo   ", "foo ", false, false},
    {"foo\\ ", "foo ", false, true},
    {"foo\\ ", "foo", false, false},
    {"foo\\  ", "foo ", false, true},
    {"foo\\\\ ", "foo\\", false, true},
    {"foo\\\\ ", "foo\\ ", false, false},
    {"a b", "a b", false, true},
    {"foo\r\nbar", "foo", false, true},
    {"foo\r\nbar", "bar", false, true},
    {"\xEF\xBB\xBF"
     "foo",
     "foo", false, true},
    /* negation, last match wins */
    {"*.log\n!keep.log", "a.log", false, true},
    {"*.log\n!keep.log", "keep.log", false, false},
    {"*.log\n!keep.log", "d/keep.log", false, false},
    {"!keep.log\n*.log", "keep.log", false, true},
    {"*.log\n!keep.log\nkeep.log", "keep.log", false, true},
    {"!foo", "foo", false, false},
    /* a file cannot be re-included if a parent directory is excluded */
    {"build/\n!build/keep", "build/keep", false, true},
    {"build\n!build/keep", "build/keep", false, true},
    {"build/\n!build/keep", "build", true, true},
    {"build/*\n!build/keep", "build/keep", false, false},
    {"build/*\n!build/keep", "build/other", false, true},
    {"build/*\n!build/keep", "build", true, false},
    {"build/*\n!build/keep/", "build/keep/x", false, false},
    {"build/*\n!build/keep/", "build/keep", false, true},
    {"foo/**\n!foo/keep", "foo/keep", false, false},
    {"foo/**\n!foo/keep", "foo/other", false, true},
    {"foo/**\n!foo/keep", "foo", true, false},
    {"foo/**\n!foo/sub/", "foo/sub/x", false, true},
    {"*\n!*/\n!*.c", "src/main.c", false, false},
    {"*\n!*/\n!*.c", "src/main.o", false, true},
    {"*\n!*/\n!*.c", "src", true, false},
    /* anchoring */
    {"/foo", "foo", false, true},
    {"/foo", "a/foo", false, false},
    {"/foo", "foo/x", false, true},
    {"a/b", "a/b", false, true},
    {"a/b", "x/a/b", false, false},
    {"a/b", "a/b/c", false, true},
    {"a/b", "a/bc", false, false},
    {"/a/b", "a/b", false, true},
    {"a/*", "a/x", false, true},
    {"a/*", "a/x/y", false, true},
    {"a/*", "a", true, false},
    {"a/*/c", "a/b/c", false, true},
    {"a/*/c", "a/b/b/c", false, false},
    {"a/*/c", "a/c", false, false},
    /* trailing slash: directories only */
    {"foo/", "foo", false, false},
    {"foo/", "foo", true, true},
    {"foo/", "foo/bar", false, true},
    {"foo/", "x/foo", true, true},
    {"foo/", "x/foo/y", false, true},
    {"a/foo/", "a/foo", true, true},
    {"a/foo/", "a/foo", false, false},
    {"a/foo/", "b/a/foo", true, false},
    {"/foo/", "foo", true, true},
    {"*/", "x", true, true},
    {"*/", "x", false, false},
    {"*/", "x/y", false, true},
    /* * and ? do not cross / */
    {"*.o", "a.o", false, true},
    {"*.o", "x/y/a.o", false, true},
    {"*.o", "a.o.c", false, false},
    {"*", "anything", false, true},
    {"a*b", "ab", false, true},
    {"a*b", "axxxb", false, true},
    {"a*b", "axxxbc", false, false},
    {"ab*ba", "aba", false, false},
    {"ab*ba", "abba", false, true},
    {"*ab*ba*", "xxabyybazz", false, true},
    {"*ab*ba*", "xxbayyab", false, false},
    {"x/a*b", "x/a/b", false, false},
    {"x/a*b", "x/ab", false, true},
    {"a?c", "abc", false, true},
    {"a?c", "ac", false, false},
    {"a?c", "abbc", false, false},
    {"x/a?c", "x/a/c", false, false},
    {"x*y", "x/y", false, false},
    {"x?y", "x/y", false, false},
    {"a**b", "axyb", false, true},
    {"a**b", "ax/yb", false, false},
    {"***.o", "a.o", false, true},
    {"a/***/b", "a/x/y/b", false, true},
    {"a/***/b", "a/b", false, true},
    /* bracket expressions */
    {"[abc].txt", "b.txt", false, true},
    {"[abc].txt", "d.txt", false, false},
    {"[a-c]x", "bx", false, true},
    {"[a-c]x", "dx", false, false},
    {"[!a-c]x", "dx", false, true},
    {"[!a-c]x", "ax", false, false},
    {"[^a-c]x", "dx", false, true},
    {"[^a-c]x", "cx", false, false},
    {"[[]x", "[x", false, true}, /* the literal bracket the error message suggests */
    {"[]]x", "]x", false, true},
    {"[]a]x", "ax", false, true},
    {"[!]]x", "]x", false, false},
    {"[!]]x", "ax", false, true},
    {"[a-]x", "-x", false, true},
    {"[a-]x", "ax", false, true},
    {"[a-]x", "bx", false, false},
    {"[\\]]x", "]x", false, true},
    {"[\\-a]x", "-x", false, true},
    {"[z-a]x", "mx", false, false},
    {"[[:digit:]]x", "5x", false, true},
    {"[[:digit:]]x", "ax", false, false},
    {"[[:alpha:][:digit:]_]", "_", false, true},
    {"[[:upper:]]*", "Make", false, true},
    {"[[:upper:]]*", "make", false, false},
    {"[[:space:]]", " ", false, true},
    {"[[:xdigit:]][[:xdigit:]]", "fF", false, true},
    {"[[:punct:]]", "!", false, true},
    {"[[:punct:]]", "a", false, false},
    {"x[/]y", "x/y", false, false},
    {"x[!a]y", "x/y", false, false},
    {"[!a]", "/", false, false},
    /* ** */
    {"**/foo", "foo", false, true},
    {"**/foo", "a/foo", false, true},
    {"**/foo", "a/b/foo", false, true},
    {"**/foo", "a/foobar", false, false},
    {"**/foo/bar", "x/foo/bar", false, true},
    {"**/foo/bar", "foo/bar", false, true},
    {"**/foo/bar", "x/foo/x/bar", false, false},
    {"a/**/b", "a/b", false, true},
    {"a/**/b", "a/x/b", false, true},
    {"a/**/b", "a/x/y/z/b", false, true},
    {"a/**/b", "a/xb", false, false},
    {"a/**/b", "x/a/b", false, false},
    {"a/**/b/", "a/x/b", false, false},
    {"a/**/b/", "a/x/b", true, true},
    {"abc/**", "abc/x", false, true},
    {"abc/**", "abc/x/y", false, true},
    {"abc/**", "abc", true, false},
    {"abc/**", "abcd/x", false, false},
    {"abc/**/", "abc/x", false, false},
    {"abc/**/", "abc/x", true, true},
    {"abc/**/", "abc/x/y", false, true},
    {"**", "x/y/z", false, true},
    {"/**", "x", false, true},
    {"**/", "x", true, true},
    {"**/", "x", false, false},
    {"**/", "x/y", false, true},
    {"**/**/x", "a/b/x", false, true},
    {"a/**/**/b", "a/b", false, true},
    {"a/**/**/b", "a/x/y/b", false, true},
    {"a/**/**", "a/x", false, true},
    {"a/**/**", "a", true, false},
    {"**/a/**/b/**/c", "a/b/c/x", false, true},
    {"**/a/**/b/**/c", "x/a/y/b/z/c", false, true},
    {"**/a/**/b/**/c", "x/a/y/c/z/b", false, false},
    {"a/**/*.c", "a/x/y.c", false, true},
    {"a/**/*.c", "a/y.c", false, true},
    {"a/**/*.c", "b/y.c", false, false},
    /* escaped slash separates like a slash */
    {"a\\/b", "a/b", false, true},
    {"a\\/b", "x/a/b", false, false},
    /* non-UTF-8 bytes */
    {"\xff*", "\xff\xfe", false, true},
    {"\xff*", "\xfe\xff", false, false},
    {"?", "\xc3", false, true},
    {"?", "\xc3\xa9", false, false},
    {"??", "\xc3\xa9", false, true},
    {"[\x80-\xff]", "\x90", false, true},
    {"[\x80-\xff]", "a", false, false},
    {"caf\xc3\xa9", "x/caf\xc3\xa9", false, true},
    /* untidy paths */
    {"/a/b", "a//b/", false, true},
    {"/a/b", "/a/b", false, true},
    {"foo", "", false, false},
    {"*", "", true, false},
    /* "." and ".." components never match normalised paths */
    {"./foo", "foo", false, false},
};

static void test_table(void **state)
{
    (void)state;
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++) {
        const struct mcase *c = &cases[i];
        struct lr_ignore *ig = parse_ok(c->rules, strlen(c->rules));
        bool got = match_s(ig, c->path, c->is_dir);
        if (got != c->want)
            fail_msg("case %zu: rules \"%s\" path \"%s\" dir=%d: got %d want %d", i, c->rules,
                     c->path, c->is_dir, got, c->want);
        lr_ignore_free(ig);
    }
    print_message("%zu table cases\n", n);
}

static void test_null_and_empty(void **state)
{
    (void)state;
    assert_false(lr_ignore_match(NULL, "a", 1, false));
    assert_false(lr_ignore_match_entry(NULL, "a", 1, false));
    assert_int_equal(lr_ignore_count(NULL), 0);
    lr_ignore_free(NULL);
    struct lr_ignore *ig = parse_ok(NULL, 0);
    assert_int_equal(lr_ignore_count(ig), 0);
    assert_false(match_s(ig, "a", false));
    lr_ignore_free(ig);

    ig = parse_ok("# c\n\na\n  \n!b\n", 13);
    assert_int_equal(lr_ignore_count(ig), 2);
    lr_ignore_free(ig);
}

/* A path with an embedded NUL is just bytes; len is authoritative. */
static void test_len_not_nul(void **state)
{
    (void)state;
    struct lr_ignore *ig = parse_ok("a*", 2);
    assert_true(lr_ignore_match(ig, "ab\0c", 4, false));
    assert_false(lr_ignore_match(ig, "xa", 2, false));
    /* only the first 2 bytes of "abc/xyz" are the path */
    lr_ignore_free(ig);
    ig = parse_ok("/abc", 4);
    assert_false(lr_ignore_match(ig, "abc/xyz", 2, false));
    assert_true(lr_ignore_match(ig, "abc/xyz", 3, false));
    lr_ignore_free(ig);
}

static void test_explain(void **state)
{
    (void)state;
    const char *rules = "# header\n*.log\n\n!keep.log\nbuild/\n";
    struct lr_ignore *ig = parse_ok(rules, strlen(rules));
    unsigned line = 99;
    assert_true(lr_ignore_explain(ig, "a.log", 5, false, &line));
    assert_int_equal(line, 2);
    assert_false(lr_ignore_explain(ig, "keep.log", 8, false, &line));
    assert_int_equal(line, 4);
    assert_false(lr_ignore_explain(ig, "src/x.c", 7, false, &line));
    assert_int_equal(line, 0);
    assert_true(lr_ignore_explain(ig, "build/keep.log", 14, false, &line));
    assert_int_equal(line, 5);
    lr_ignore_free(ig);
}

/* The built-in first rule "/.landropicignore", and opting the file in with a `!` rule. */
static void test_builtin_self_rule(void **state)
{
    (void)state;
    static const char F[] = ".landropicignore";
    /* No rules at all (NULL or an empty file): the root file alone is ignored. */
    struct lr_ignore *empty = parse_ok("", 0);
    const struct lr_ignore *none[2] = {NULL, empty};
    for (int k = 0; k < 2; k++) {
        const struct lr_ignore *ig = none[k];
        assert_true(match_s(ig, F, false));
        assert_true(lr_ignore_match_entry(ig, F, strlen(F), false));
        assert_true(match_s(ig, "/.landropicignore", false)); /* empty components skipped */
        assert_true(match_s(ig, F, true));
        assert_true(match_s(ig, ".landropicignore/x", false)); /* under it, as in git */
        assert_false(lr_ignore_match_entry(ig, ".landropicignore/x", 18, false));
        assert_false(match_s(ig, "sub/.landropicignore", false));
        assert_false(match_s(ig, ".landropicignorex", false));
        assert_false(match_s(ig, ".landropicignor", false));
        assert_false(match_s(ig, "landropicignore", false));
        assert_false(match_s(ig, ".landropic", true));
        /* the length decides, not a NUL */
        assert_false(lr_ignore_match(ig, ".landropicignore", 15, false));
        assert_false(lr_ignore_match(ig, "", 0, true));
        unsigned line = 99;
        assert_true(lr_ignore_explain(ig, F, strlen(F), false, &line));
        assert_int_equal(line, 0);
    }
    assert_int_equal(lr_ignore_count(empty), 0);
    lr_ignore_free(empty);

    static const struct {
        const char *rules;
        bool ignored;
        unsigned line; /* lr_ignore_explain's answer for the root file */
    } self_cases[] = {
        {"*.tmp\n", true, 0},
        {"!.landropicignore\n", false, 1},
        {"!/.landropicignore\n", false, 1},
        {"# mine\n*.tmp\n!.landropicignore\n", false, 3},
        {"!.landropicignore\n.landropicignore\n", true, 2}, /* last match wins */
        {"*\n!.landropicignore\n", false, 2},
        {"!.landropicignore\n*\n", true, 2},
        {"!*.txt\n", true, 0},                /* does not match it */
        {"!.landropicignore/\n", true, 0},    /* directories only: not the file */
        {"!sub/.landropicignore\n", true, 0}, /* another path */
        {"!.landropic*\n", false, 1},         /* any `!` rule matching it opts in */
        {"!**/.landropicignore\n", false, 1}, /* leading ** includes the root */
        {".landropicignore\n", true, 1},      /* the workaround of older versions */
        {"/.landropicignore\n!x\n", true, 1}, /* said twice: the file's line decides */
    };
    for (size_t i = 0; i < sizeof(self_cases) / sizeof(self_cases[0]); i++) {
        struct lr_ignore *ig = parse_ok(self_cases[i].rules, strlen(self_cases[i].rules));
        unsigned line = 99;
        bool got = lr_ignore_explain(ig, F, strlen(F), false, &line);
        if (got != self_cases[i].ignored || line != self_cases[i].line)
            fail_msg("rules \"%s\": got %d line %u, want %d line %u", self_cases[i].rules, got,
                     line, self_cases[i].ignored, self_cases[i].line);
        assert_int_equal(match_s(ig, F, false), self_cases[i].ignored);
        assert_int_equal(lr_ignore_match_entry(ig, F, strlen(F), false), self_cases[i].ignored);
        lr_ignore_free(ig);
    }
    /* `!.landropicignore` does not undo an excluded parent for a nested path. */
    struct lr_ignore *ig =
        parse_ok("sub/\n!.landropicignore\n", strlen("sub/\n!.landropicignore\n"));
    assert_true(match_s(ig, "sub/.landropicignore", false));
    assert_false(match_s(ig, F, false));
    lr_ignore_free(ig);
}

/* lr_ignore_match_entry judges only the last component. */
static void test_entry_only(void **state)
{
    (void)state;
    const char *rules = "build/\n!build/keep\n";
    struct lr_ignore *ig = parse_ok(rules, strlen(rules));
    assert_true(lr_ignore_match(ig, "build/keep", 10, false));
    assert_false(lr_ignore_match_entry(ig, "build/keep", 10, false));
    assert_true(lr_ignore_match_entry(ig, "build", 5, true));
    assert_false(lr_ignore_match_entry(ig, "build", 5, false));
    lr_ignore_free(ig);
}

/* --- parse errors ----------------------------------------------------------------------------- */

struct ecase {
    const char *text;
    int code;
    const char *msg; /* substring */
};

static const struct ecase ecases[] = {
    {"ok\n[abc", LR_EPATTERN, "line 2: unterminated '['"},
    {"[", LR_EPATTERN, "line 1: unterminated"},
    {"[]", LR_EPATTERN, "line 1: unterminated"},
    {"[!]", LR_EPATTERN, "line 1: unterminated"},
    {"[a-\\", LR_EPATTERN, "unterminated"},
    {"[\\", LR_EPATTERN, "unterminated"},
    {"a\nb\nc\\", LR_EPATTERN, "line 3: pattern ends with a lone backslash"},
    {"/", LR_EPATTERN, "line 1: empty pattern"},
    {"!", LR_EPATTERN, "line 1: empty pattern"},
    {"x\n!/", LR_EPATTERN, "line 2: empty pattern"},
    {"//", LR_EPATTERN, "line 1: empty"},
    {"a//b", LR_EPATTERN, "line 1: empty path component"},
    {"a/**//b", LR_EPATTERN, "empty path component"},
    {"[[:foo:]]", LR_EPATTERN, "line 1: unknown character class '[:foo:]'"},
};

static void test_parse_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ecases) / sizeof(ecases[0]); i++) {
        struct lr_ignore *ig = (struct lr_ignore *)(uintptr_t)1;
        struct lr_err err = {0};
        int rc = lr_ignore_parse(ecases[i].text, strlen(ecases[i].text), &ig, &err);
        if (rc != ecases[i].code || !strstr(err.msg, ecases[i].msg))
            fail_msg("\"%s\": rc %d msg \"%s\", want \"%s\"", ecases[i].text, rc, err.msg,
                     ecases[i].msg);
        assert_null(ig);
    }
    /* NUL inside the text */
    struct lr_ignore *ig;
    struct lr_err err = {0};
    assert_int_equal(lr_ignore_parse("a\nb\0c\n", 6, &ig, &err), LR_EPATTERN);
    assert_non_null(strstr(err.msg, "line 2: contains a NUL"));
}

static void test_limits(void **state)
{
    (void)state;
    struct lr_ignore *ig;
    struct lr_err err = {0};

    /* line length: 4096 is fine (even for a pattern), 4097 is not */
    char *line = lr_xmalloc(LR_IGNORE_MAX_LINE + 2);
    memset(line, 'a', LR_IGNORE_MAX_LINE + 1);
    ig = parse_ok(line, LR_IGNORE_MAX_LINE);
    assert_true(lr_ignore_match(ig, line, LR_IGNORE_MAX_LINE, false));
    lr_ignore_free(ig);
    assert_int_equal(lr_ignore_parse(line, LR_IGNORE_MAX_LINE + 1, &ig, &err), LR_EPATTERN);
    assert_non_null(strstr(err.msg, "line 1: longer than 4096"));
    /* the longest pattern of slashes: 2048 components */
    for (size_t i = 1; i < LR_IGNORE_MAX_LINE; i += 2)
        line[i] = '/';
    ig = parse_ok(line, LR_IGNORE_MAX_LINE - 1);
    assert_true(lr_ignore_match(ig, line, LR_IGNORE_MAX_LINE - 1, false));
    line[LR_IGNORE_MAX_LINE - 2] = 'b';
    assert_false(lr_ignore_match(ig, line, LR_IGNORE_MAX_LINE - 1, false));
    lr_ignore_free(ig);
    free(line);

    /* rule count: 10000 fine, 10001 not (comments do not count) */
    size_t cap = 12 * (LR_IGNORE_MAX_RULES + 1) + 64;
    char *text = lr_xmalloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(text + n, cap - n, "# comment\n\n");
    for (int i = 0; i < LR_IGNORE_MAX_RULES; i++)
        n += (size_t)snprintf(text + n, cap - n, "r%d\n", i);
    ig = parse_ok(text, n);
    assert_int_equal(lr_ignore_count(ig), LR_IGNORE_MAX_RULES);
    assert_true(lr_ignore_match(ig, "x/r9999", 7, false));
    assert_false(lr_ignore_match(ig, "x/r10000", 8, false));
    lr_ignore_free(ig);
    n += (size_t)snprintf(text + n, cap - n, "one-more\n");
    assert_int_equal(lr_ignore_parse(text, n, &ig, &err), LR_EPATTERN);
    assert_non_null(strstr(err.msg, "line 10003: more than 10000 rules"));
    free(text);

    /* total size */
    size_t big = (size_t)LR_IGNORE_MAX_FILE + 1;
    char *huge = lr_xmalloc(big);
    memset(huge, '\n', big);
    assert_int_equal(lr_ignore_parse(huge, big, &ig, &err), LR_ETOOBIG);
    ig = parse_ok(huge, big - 1);
    lr_ignore_free(ig);
    free(huge);
}

/* --- differential test against POSIX regex ---------------------------------------------------- */

/*
 * Oracle: translate each rule to an extended regex over the whole path
 * prefix, independently of the library's compiler, and apply git's rules
 * (last match wins per prefix; any excluded prefix excludes the path).
 */
struct orule {
    regex_t re;
    bool negate, dir_only;
};

static void rx_append(char *rx, size_t *n, const char *s)
{
    size_t l = strlen(s);
    assert_true(*n + l < 1024);
    memcpy(rx + *n, s, l);
    *n += l;
    rx[*n] = '\0';
}

/* Pattern alphabet: a b * ? / [ab] [!a] ** and the prefixes ! and /. */
static void oracle_compile(const char *pat, struct orule *o)
{
    const char *p = pat;
    o->negate = o->dir_only = false;
    if (*p == '!') {
        o->negate = true;
        p++;
    }
    bool anchored = false;
    if (*p == '/') {
        anchored = true;
        p++;
    }
    char body[256];
    size_t bl = strlen(p);
    memcpy(body, p, bl + 1);
    if (bl && body[bl - 1] == '/') {
        o->dir_only = true;
        body[--bl] = '\0';
    }
    if (strchr(body, '/'))
        anchored = true;

    /* split into components */
    char *comps[64];
    size_t nc = 0;
    for (char *t = body;;) {
        char *sl = strchr(t, '/');
        comps[nc++] = t;
        if (!sl)
            break;
        *sl = '\0';
        t = sl + 1;
    }
    char rx[1024];
    size_t n = 0;
    rx_append(rx, &n, "^");
    if (!anchored)
        rx_append(rx, &n, "([^/]+/)*");
    for (size_t i = 0; i < nc; i++) {
        const char *c = comps[i];
        bool star2 = strlen(c) >= 2 && strspn(c, "*") == strlen(c);
        bool last = i + 1 == nc;
        if (star2 && !anchored) {
            rx_append(rx, &n, "[^/]*");
        } else if (star2 && last) {
            bool after_star2 = i > 0 && strspn(comps[i - 1], "*") == strlen(comps[i - 1]) &&
                               strlen(comps[i - 1]) >= 2;
            rx_append(rx, &n, i == 0 || after_star2 ? "[^/]+(/[^/]+)*" : "(/[^/]+)+");
            continue;
        } else if (star2) {
            /* zero or more whole components, each followed by '/' */
            bool after_star2 = i > 0 && strspn(comps[i - 1], "*") == strlen(comps[i - 1]) &&
                               strlen(comps[i - 1]) >= 2;
            if (i > 0 && !after_star2)
                rx_append(rx, &n, "/");
            rx_append(rx, &n, "([^/]+/)*");
            continue;
        } else {
            bool prev_star2 = i > 0 && strlen(comps[i - 1]) >= 2 &&
                              strspn(comps[i - 1], "*") == strlen(comps[i - 1]);
            if (i > 0 && !prev_star2)
                rx_append(rx, &n, "/");
            for (const char *q = c; *q; q++) {
                if (*q == '*')
                    rx_append(rx, &n, "[^/]*");
                else if (*q == '?')
                    rx_append(rx, &n, "[^/]");
                else if (*q == '[') {
                    const char *e = strchr(q, ']');
                    assert_non_null(e);
                    if (q[1] == '!') {
                        rx_append(rx, &n, "[^/");
                        char tmp[16];
                        snprintf(tmp, sizeof(tmp), "%.*s]", (int)(e - q - 2), q + 2);
                        rx_append(rx, &n, tmp);
                    } else {
                        char tmp[16];
                        snprintf(tmp, sizeof(tmp), "%.*s", (int)(e - q + 1), q);
                        rx_append(rx, &n, tmp);
                    }
                    q = e;
                } else {
                    char tmp[2] = {*q, '\0'};
                    rx_append(rx, &n, tmp);
                }
            }
        }
    }
    rx_append(rx, &n, "$");
    int rc = regcomp(&o->re, rx, REG_EXTENDED | REG_NOSUB);
    if (rc)
        fail_msg("regcomp failed for %s -> %s", pat, rx);
}

static bool oracle_match(struct orule *o, size_t nr, const char *path, bool is_dir, bool entry_only)
{
    size_t len = strlen(path);
    char prefix[256];
    for (size_t e = 1; e <= len; e++) {
        if (e < len && path[e] != '/')
            continue;
        if (entry_only && e < len)
            continue;
        memcpy(prefix, path, e);
        prefix[e] = '\0';
        bool dir = e < len || is_dir;
        for (size_t i = nr; i-- > 0;) {
            if (o[i].dir_only && !dir)
                continue;
            if (regexec(&o[i].re, prefix, 0, NULL, 0) == 0) {
                if (!o[i].negate)
                    return true;
                break;
            }
        }
    }
    return false;
}

static unsigned rnd(unsigned *s, unsigned n)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) % n;
}

static void random_pattern(unsigned *seed, char *out)
{
    static const char *const atoms[] = {"a", "b", "*", "?", "[ab]", "[!a]", "ab", "ba"};
    size_t n = 0;
    out[0] = '\0';
    if (rnd(seed, 4) == 0)
        out[n++] = '!';
    if (rnd(seed, 3) == 0)
        out[n++] = '/';
    unsigned nc = 1 + rnd(seed, 3);
    for (unsigned c = 0; c < nc; c++) {
        if (c)
            out[n++] = '/';
        if (rnd(seed, 4) == 0) {
            memcpy(out + n, "**", 2);
            n += 2;
            continue;
        }
        unsigned na = 1 + rnd(seed, 3);
        for (unsigned a = 0; a < na; a++) {
            const char *at = atoms[rnd(seed, 8)];
            memcpy(out + n, at, strlen(at));
            n += strlen(at);
        }
    }
    if (rnd(seed, 4) == 0)
        out[n++] = '/';
    out[n] = '\0';
    /* "/" + "**" + "/" alone etc. are fine; an empty pattern is impossible here. */
}

static void random_path(unsigned *seed, char *out)
{
    size_t n = 0;
    unsigned nc = 1 + rnd(seed, 4);
    for (unsigned c = 0; c < nc; c++) {
        if (c)
            out[n++] = '/';
        unsigned l = 1 + rnd(seed, 4);
        for (unsigned i = 0; i < l; i++)
            out[n++] = "abc"[rnd(seed, 3)];
    }
    out[n] = '\0';
}

static void test_differential(void **state)
{
    (void)state;
    unsigned seed = 12345;
    size_t checks = 0, ignored = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t nr = 1 + rnd(&seed, 3);
        char pats[3][128];
        char text[512];
        size_t tl = 0;
        struct orule o[3];
        for (size_t i = 0; i < nr; i++) {
            random_pattern(&seed, pats[i]);
            tl += (size_t)snprintf(text + tl, sizeof(text) - tl, "%s\n", pats[i]);
            oracle_compile(pats[i], &o[i]);
        }
        struct lr_ignore *ig = parse_ok(text, tl);
        for (int k = 0; k < 40; k++) {
            char path[64];
            random_path(&seed, path);
            bool is_dir = rnd(&seed, 2);
            bool want = oracle_match(o, nr, path, is_dir, false);
            bool got = match_s(ig, path, is_dir);
            if (got != want)
                fail_msg("rules [%s] path %s dir=%d: got %d, oracle %d", text, path, is_dir, got,
                         want);
            bool want_e = oracle_match(o, nr, path, is_dir, true);
            bool got_e = lr_ignore_match_entry(ig, path, strlen(path), is_dir);
            if (got_e != want_e)
                fail_msg("entry: rules [%s] path %s dir=%d: got %d, oracle %d", text, path, is_dir,
                         got_e, want_e);
            checks++;
            ignored += got;
        }
        lr_ignore_free(ig);
        for (size_t i = 0; i < nr; i++)
            regfree(&o[i].re);
    }
    print_message("%zu differential checks, %zu ignored\n", checks, ignored);
    /* Both outcomes must be well represented, or the test proves little. */
    assert_true(ignored > checks / 10 && ignored < checks * 9 / 10);
}

/* --- pathological patterns: bounded work ---------------------------------------------------- */

static uint64_t steps_for(const char *rules, const char *path, size_t plen, bool entry)
{
    struct lr_ignore *ig = parse_ok(rules, strlen(rules));
    uint64_t steps = 0;
    (void)lr__ignore_match_steps(ig, path, plen, false, entry, &steps);
    uint64_t bound = step_bound(plen, strlen(rules), lr_ignore_count(ig));
    if (steps > bound)
        fail_msg("rules \"%.40s\" path len %zu: %llu steps > bound %llu", rules, plen,
                 (unsigned long long)steps, (unsigned long long)bound);
    lr_ignore_free(ig);
    return steps;
}

static void test_pathological(void **state)
{
    (void)state;
    size_t n = 4000;
    char *as = lr_xmalloc(n + 1);
    memset(as, 'a', n);
    as[n] = '\0';
    /* exponential backtracking would need ~C(4000, 5) steps here */
    uint64_t s1 = steps_for("a*a*a*a*a*b", as, n, false);
    uint64_t s2 = steps_for("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", as, n, false);
    uint64_t s3 = steps_for("a**********************************b", as, n, false);
    /* the two-pointer matcher's real worst case: O(len x pattern) */
    uint64_t s3b = steps_for("*aaaaaaaaaaaaaaaaaaaab", as, n, false);
    /* "a/a/a/...": 2000 components against a chain of globstars */
    char *comps = lr_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        comps[i] = i % 2 ? '/' : 'a';
    comps[n - 1] = 'a';
    comps[n] = '\0';
    uint64_t s4 = steps_for("**/a/**/a/**/a/**/a/**/a/**/b", comps, n - 1, false);
    uint64_t s5 = steps_for("**/a/**/a/**/a/**/a/**/a/**/b", comps, n - 1, true);
    uint64_t s6 = steps_for("a/**/**/**/**/**/**/**/**/b", comps, n - 1, false);
    uint64_t s7 = steps_for("**/*a*a*a*a*a*a*b/**", comps, n - 1, false);
    /* many rules, each touching every ancestor */
    char *many = lr_xmalloc(64 * 1000);
    size_t ml = 0;
    for (int i = 0; i < 1000; i++)
        ml += (size_t)snprintf(many + ml, 64 * 1000 - ml, "*a*a*b%d\n", i);
    uint64_t s8 = steps_for(many, comps, 200, false);
    print_message("steps: a*a*a*a*a*b %llu; 16 stars %llu; star run %llu; *a{20}b %llu; "
                  "globstar chain %llu "
                  "(entry %llu); 8 globstars %llu; star+globstar %llu; 1000 rules x 100 "
                  "dirs %llu\n",
                  (unsigned long long)s1, (unsigned long long)s2, (unsigned long long)s3,
                  (unsigned long long)s3b, (unsigned long long)s4, (unsigned long long)s5,
                  (unsigned long long)s6, (unsigned long long)s7, (unsigned long long)s8);
    /* absolute sanity: none of these is anywhere near exponential */
    assert_true(s1 < 100000 && s2 < 200000 && s3 < 20000 && s3b < 200000);
    assert_true(s4 < 100000 && s6 < 100000 && s7 < 200000);
    free(many);
    free(comps);
    free(as);
}

/* --- loading from a folder ---------------------------------------------------------------------
 */

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void write_file(const char *path, const char *s, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
    close(fd);
}

static void test_load(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    char *dir = lr_xasprintf("%s/lr-test-ignore-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    char *f = lr_xasprintf("%s/%s", dir, LR_IGNORE_FILE);
    struct lr_ignore *ig = (struct lr_ignore *)(uintptr_t)1;
    struct lr_err err = {0};

    /* absent: empty rule set */
    assert_int_equal(lr_ignore_load(dir, &ig, &err), 0);
    assert_int_equal(lr_ignore_count(ig), 0);
    lr_ignore_free(ig);

    write_file(f, "*.tmp\n!keep.tmp\n", 16);
    assert_int_equal(lr_ignore_load(dir, &ig, &err), 0);
    assert_int_equal(lr_ignore_count(ig), 2);
    assert_true(match_s(ig, "x.tmp", false));
    assert_false(match_s(ig, "keep.tmp", false));
    lr_ignore_free(ig);

    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(lr_ignore_load_at(dfd, &ig, &err), 0);
    lr_ignore_free(ig);

    /* bad pattern: names the file and the line */
    write_file(f, "ok\nbad[\n", 8);
    assert_int_equal(lr_ignore_load(dir, &ig, &err), LR_EPATTERN);
    assert_null(ig);
    assert_non_null(strstr(err.msg, ".landropicignore: line 2: unterminated"));

    /* symlink: refused, not followed */
    char *target = lr_xasprintf("%s/real", dir);
    write_file(target, "*\n", 2);
    assert_int_equal(unlink(f), 0);
    assert_int_equal(symlink(target, f), 0);
    assert_int_equal(lr_ignore_load_at(dfd, &ig, &err), -ELOOP);
    assert_null(ig);
    /* said as it is, not as a loop ("Too many levels of symbolic links") */
    assert_non_null(strstr(err.msg, ".landropicignore: it is a symbolic link"));
    assert_int_equal(unlink(f), 0);

    /* FIFO: refused without blocking */
    assert_int_equal(mkfifo(f, 0600), 0);
    assert_int_equal(lr_ignore_load_at(dfd, &ig, &err), LR_EBADVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(unlink(f), 0);

    /* directory of that name */
    assert_int_equal(mkdir(f, 0700), 0);
    assert_int_equal(lr_ignore_load_at(dfd, &ig, &err), LR_EBADVAL);
    assert_int_equal(rmdir(f), 0);

    /* size cap */
    size_t big = (size_t)LR_IGNORE_MAX_FILE + 1;
    char *huge = lr_xmalloc(big);
    /* comment lines: a file exactly at the cap loads, one byte more does not */
    for (size_t i = 0; i < big; i++)
        huge[i] = i % 64 == 63 ? '\n' : '#';
    write_file(f, huge, big);
    assert_int_equal(lr_ignore_load_at(dfd, &ig, &err), LR_ETOOBIG);
    write_file(f, huge, big - 1);
    assert_int_equal(lr_ignore_load_at(dfd, &ig, &err), 0);
    assert_int_equal(lr_ignore_count(ig), 0);
    lr_ignore_free(ig);
    free(huge);

    /* root that does not exist */
    char *nope = lr_xasprintf("%s/nope", dir);
    assert_int_equal(lr_ignore_load(nope, &ig, &err), -ENOENT);
    free(nope);

    close(dfd);
    free(target);
    free(f);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* --- concurrent matching ---------------------------------------------------------------------- */

#define THR_PATHS 2000

struct thr_arg {
    const struct lr_ignore *ig;
    char (*paths)[64];
    bool *want;
    int bad;
};

static void *thr_main(void *p)
{
    struct thr_arg *a = p;
    for (int rep = 0; rep < 5; rep++)
        for (int i = 0; i < THR_PATHS; i++)
            if (match_s(a->ig, a->paths[i], i % 2) != a->want[i])
                a->bad++;
    return NULL;
}

/* One rule set shared by 4 threads gives the same answers as one thread. */
static void test_threads(void **state)
{
    (void)state;
    const char *rules = "*.o\n!keep.o\nbuild/\n**/cache/**\na*b?c\n/top/*\n";
    struct lr_ignore *ig = parse_ok(rules, strlen(rules));
    char(*paths)[64] = lr_xmallocarray(THR_PATHS, sizeof(*paths));
    bool *want = lr_xmallocarray(THR_PATHS, sizeof(*want));
    unsigned seed = 7;
    static const char *const parts[] = {"a", "b.o", "keep.o", "build", "cache", "top", "axbyc"};
    size_t hits = 0;
    for (int i = 0; i < THR_PATHS; i++) {
        size_t n = 0;
        unsigned nc = 1 + rnd(&seed, 4);
        for (unsigned c = 0; c < nc; c++)
            n += (size_t)snprintf(paths[i] + n, 64 - n, "%s%s", c ? "/" : "", parts[rnd(&seed, 7)]);
        want[i] = match_s(ig, paths[i], i % 2);
        hits += want[i];
    }
    assert_true(hits > THR_PATHS / 10 && hits < THR_PATHS * 9 / 10);
    pthread_t t[4];
    struct thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thr_arg){.ig = ig, .paths = paths, .want = want, .bad = 0};
        assert_int_equal(pthread_create(&t[i], NULL, thr_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
    }
    free(paths);
    free(want);
    lr_ignore_free(ig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_null_and_empty),
        cmocka_unit_test(test_len_not_nul),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_builtin_self_rule),
        cmocka_unit_test(test_entry_only),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_differential),
        cmocka_unit_test(test_pathological),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
