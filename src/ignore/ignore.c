#include "ignore/ignore.h"

#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A rule is compiled into path components; each component is a run of glob
 * tokens, or a globstar. Matching runs the components as an NFA over the
 * path's components: state j means "components 0..j-1 matched". A pattern
 * without an anchoring '/' is compiled as "** / pattern", so one engine
 * serves both kinds.
 */

enum tok_kind { T_LIT, T_ANY, T_STAR, T_SET };

struct tok {
    uint8_t kind;
    uint8_t c;    /* T_LIT */
    uint32_t set; /* T_SET: index into rule->sets */
};

enum comp_kind {
    C_GLOB,
    C_GLOBSTAR,  /* zero or more components ("**" first or in the middle) */
    C_GLOBSTAR1, /* one or more components (trailing "/ **") */
};

struct comp {
    uint8_t kind;
    uint32_t off, n; /* C_GLOB: tokens [off, off+n) */
};

struct rule {
    struct comp *comps;
    struct tok *toks;
    uint8_t (*sets)[32];
    uint32_t ncomps;
    unsigned line;
    bool negate;
    bool dir_only;
};

struct lr_ignore {
    struct rule *rules;
    size_t n;
};

/* A pattern line of at most LR_IGNORE_MAX_LINE bytes has at most this many components. */
#define MAX_COMPS (LR_IGNORE_MAX_LINE / 2 + 2)

/* --- compiling ----------------------------------------------------------------------------- */

struct compiler {
    struct tok *toks;
    size_t ntoks, toks_cap;
    struct comp *comps;
    size_t ncomps, comps_cap;
    uint8_t (*sets)[32];
    size_t nsets, sets_cap;
    size_t comp_start; /* first token of the component being built */
};

static void push_tok(struct compiler *c, struct tok t)
{
    /* Runs of '*' inside a component mean the same as one and would only cost time. */
    if (t.kind == T_STAR && c->ntoks > c->comp_start && c->toks[c->ntoks - 1].kind == T_STAR)
        return;
    if (c->ntoks == c->toks_cap) {
        c->toks_cap = c->toks_cap ? 2 * c->toks_cap : 16;
        c->toks = lr_xreallocarray(c->toks, c->toks_cap, sizeof(*c->toks));
    }
    c->toks[c->ntoks++] = t;
}

static void push_comp(struct compiler *c, uint8_t kind)
{
    /* "** / **" is "**": merging keeps the state sets small. */
    if (kind != C_GLOB && c->ncomps && c->comps[c->ncomps - 1].kind != C_GLOB)
        return;
    if (c->ncomps == c->comps_cap) {
        c->comps_cap = c->comps_cap ? 2 * c->comps_cap : 8;
        c->comps = lr_xreallocarray(c->comps, c->comps_cap, sizeof(*c->comps));
    }
    struct comp *cp = &c->comps[c->ncomps++];
    cp->kind = kind;
    cp->off = (uint32_t)c->comp_start;
    cp->n = (uint32_t)(c->ntoks - c->comp_start);
    c->comp_start = c->ntoks;
}

static uint8_t *new_set(struct compiler *c, uint32_t *idx)
{
    if (c->nsets == c->sets_cap) {
        c->sets_cap = c->sets_cap ? 2 * c->sets_cap : 4;
        c->sets = lr_xreallocarray(c->sets, c->sets_cap, sizeof(*c->sets));
    }
    *idx = (uint32_t)c->nsets;
    uint8_t *s = c->sets[c->nsets++];
    memset(s, 0, 32);
    return s;
}

static void set_add(uint8_t *set, unsigned lo, unsigned hi)
{
    for (unsigned x = lo; x <= hi; x++)
        set[x >> 3] = (uint8_t)(set[x >> 3] | (1u << (x & 7)));
}

static bool set_has(const uint8_t *set, uint8_t x)
{
    return set[x >> 3] & (1u << (x & 7));
}

/* POSIX character classes, ASCII only (bytes >= 0x80 belong to none). */
static bool class_has(const char *name, size_t n, unsigned x)
{
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
    bool up = x >= 'A' && x <= 'Z', lo = x >= 'a' && x <= 'z', dg = x >= '0' && x <= '9';
    bool graph = x > 0x20 && x < 0x7f;
    if (IS("alpha"))
        return up || lo;
    if (IS("upper"))
        return up;
    if (IS("lower"))
        return lo;
    if (IS("digit"))
        return dg;
    if (IS("alnum"))
        return up || lo || dg;
    if (IS("xdigit"))
        return dg || (x >= 'a' && x <= 'f') || (x >= 'A' && x <= 'F');
    if (IS("space"))
        return x == ' ' || (x >= '\t' && x <= '\r');
    if (IS("blank"))
        return x == ' ' || x == '\t';
    if (IS("cntrl"))
        return x < 0x20 || x == 0x7f;
    if (IS("punct"))
        return graph && !(up || lo || dg);
    if (IS("graph"))
        return graph;
    if (IS("print"))
        return graph || x == ' ';
    return false;
#undef IS
}

static bool class_known(const char *name, size_t n)
{
    static const char *const names[] = {"alpha", "upper", "lower", "digit", "alnum", "xdigit",
                                        "space", "blank", "cntrl", "punct", "graph", "print"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
            return true;
    return false;
}

/* Parse the bracket expression starting at s[*i] == '['; advance *i past ']'. */
static int parse_bracket(struct compiler *c, const char *s, size_t n, size_t *i, unsigned line,
                         struct lr_err *err)
{
    size_t j = *i + 1;
    bool neg = false;
    if (j < n && (s[j] == '!' || s[j] == '^')) {
        neg = true;
        j++;
    }
    uint32_t idx;
    uint8_t *set = new_set(c, &idx);
    bool first = true;
    for (;;) {
        if (j >= n)
            return lr_err_set(err, LR_EPATTERN,
                              "line %u: unterminated '[' (a literal bracket is "
                              "written [[])",
                              line);
        unsigned ch = (unsigned char)s[j];
        if (ch == ']' && !first) {
            j++;
            break;
        }
        first = false;
        if (ch == '[' && j + 1 < n && s[j + 1] == ':') {
            const char *name = s + j + 2;
            const char *end = NULL;
            for (size_t k = j + 2; k + 1 < n; k++) {
                if (s[k] == ':' && s[k + 1] == ']') {
                    end = s + k;
                    break;
                }
                if (s[k] == ']')
                    break;
            }
            if (end) {
                size_t nl = (size_t)(end - name);
                if (!class_known(name, nl))
                    return lr_err_set(err, LR_EPATTERN,
                                      "line %u: unknown character class '[:%.*s:]'", line,
                                      (int)(nl > 32 ? 32 : nl), name);
                for (unsigned x = 0; x < 256; x++)
                    if (class_has(name, nl, x))
                        set_add(set, x, x);
                j = (size_t)(end - s) + 2;
                continue;
            }
        }
        if (ch == '\\') {
            if (++j >= n)
                return lr_err_set(err, LR_EPATTERN, "line %u: unterminated '['", line);
            ch = (unsigned char)s[j];
        }
        j++;
        unsigned hi = ch;
        if (j + 1 < n && s[j] == '-' && s[j + 1] != ']') {
            j++;
            hi = (unsigned char)s[j];
            if (hi == '\\') {
                if (++j >= n)
                    return lr_err_set(err, LR_EPATTERN, "line %u: unterminated '['", line);
                hi = (unsigned char)s[j];
            }
            j++;
        }
        /* A reversed range such as z-a is empty, as in git. */
        if (ch <= hi)
            set_add(set, ch, hi);
    }
    if (neg)
        for (size_t k = 0; k < 32; k++)
            set[k] = (uint8_t)~set[k];
    /* No need to exclude '/': names are matched one component at a time. */
    push_tok(c, (struct tok){.kind = T_SET, .set = idx});
    *i = j;
    return 0;
}

static void compiler_release(struct compiler *c)
{
    free(c->toks);
    free(c->comps);
    free(c->sets);
}

/*
 * Compile one non-blank, non-comment line s[0..n) (already trimmed) into r.
 */
static int compile_line(const char *s, size_t n, unsigned line, struct rule *r, struct lr_err *err)
{
    struct compiler c;
    memset(&c, 0, sizeof(c));
    memset(r, 0, sizeof(*r));
    r->line = line;
    int rc;

    if (n && s[0] == '!') {
        r->negate = true;
        s++;
        n--;
    }
    bool anchored = false;
    if (n && s[0] == '/') {
        anchored = true;
        s++;
        n--;
    }
    /* A trailing unescaped '/' (an odd run of backslashes before it escapes it). */
    if (n && s[n - 1] == '/') {
        size_t bs = 0;
        while (bs < n - 1 && s[n - 2 - bs] == '\\')
            bs++;
        if (bs % 2 == 0) {
            r->dir_only = true;
            n--;
        }
    }
    if (n == 0) {
        rc = lr_err_set(err, LR_EPATTERN, "line %u: empty pattern", line);
        goto fail;
    }

    size_t i = 0;
    while (i <= n) {
        if (i == n || s[i] == '/') {
            if (c.ntoks == c.comp_start) {
                rc = lr_err_set(err, LR_EPATTERN, "line %u: empty path component ('//')", line);
                goto fail;
            }
            push_comp(&c, C_GLOB);
            i++;
            continue;
        }
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\\') {
            if (i + 1 >= n) {
                rc = lr_err_set(err, LR_EPATTERN, "line %u: pattern ends with a lone backslash",
                                line);
                goto fail;
            }
            ch = (unsigned char)s[i + 1];
            i += 2;
            if (ch == '/') {
                /* "\/" separates like "/": a name cannot contain a slash. */
                i--;
                continue;
            }
            push_tok(&c, (struct tok){.kind = T_LIT, .c = ch});
        } else if (ch == '*') {
            size_t run = 0;
            while (i + run < n && s[i + run] == '*')
                run++;
            bool whole = c.ntoks == c.comp_start && (i + run == n || s[i + run] == '/');
            if (run >= 2 && whole) {
                push_comp(&c, C_GLOBSTAR);
                i += run;
                if (i < n)
                    i++; /* the '/' after it */
                else
                    break;
                continue;
            }
            push_tok(&c, (struct tok){.kind = T_STAR});
            i += run;
        } else if (ch == '?') {
            push_tok(&c, (struct tok){.kind = T_ANY});
            i++;
        } else if (ch == '[') {
            if ((rc = parse_bracket(&c, s, n, &i, line, err)) < 0)
                goto fail;
        } else {
            push_tok(&c, (struct tok){.kind = T_LIT, .c = ch});
            i++;
        }
    }

    if (c.ncomps > 1)
        anchored = true;
    if (!anchored) {
        /* "name" is "** / name"; a lone "**" is just "*" (every basename). */
        struct comp only = c.comps[0];
        if (only.kind != C_GLOB) {
            c.comp_start = c.ntoks;
            push_tok(&c, (struct tok){.kind = T_STAR});
            only.kind = C_GLOB;
            only.off = (uint32_t)c.comp_start;
            only.n = 1;
            c.comp_start = c.ntoks;
        }
        c.comps[0].kind = C_GLOBSTAR;
        c.comps[0].n = 0;
        c.ncomps = 1;
        if (c.ncomps == c.comps_cap) {
            c.comps_cap *= 2;
            c.comps = lr_xreallocarray(c.comps, c.comps_cap, sizeof(*c.comps));
        }
        c.comps[c.ncomps++] = only;
    } else if (c.comps[c.ncomps - 1].kind != C_GLOB) {
        /* "dir / **" matches what is inside dir, not dir itself. */
        c.comps[c.ncomps - 1].kind = C_GLOBSTAR1;
    }

    r->comps = c.comps;
    r->ncomps = (uint32_t)c.ncomps;
    r->toks = c.toks;
    r->sets = c.sets;
    return 0;
fail:
    compiler_release(&c);
    return rc;
}

static void rules_free(struct rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rules[i].comps);
        free(rules[i].toks);
        free(rules[i].sets);
    }
    free(rules);
}

void lr_ignore_free(struct lr_ignore *ig)
{
    if (!ig)
        return;
    rules_free(ig->rules, ig->n);
    free(ig);
}

size_t lr_ignore_count(const struct lr_ignore *ig)
{
    return ig ? ig->n : 0;
}

int lr_ignore_parse(const char *text, size_t len, struct lr_ignore **out, struct lr_err *err)
{
    *out = NULL;
    if (len > LR_IGNORE_MAX_FILE)
        return lr_err_set(err, LR_ETOOBIG, "ignore rules larger than %d bytes", LR_IGNORE_MAX_FILE);
    struct rule *rules = NULL;
    size_t n = 0, cap = 0;
    size_t pos = 0;
    unsigned line = 0;
    int rc;

    /* Editors on some systems start UTF-8 files with a byte order mark. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    while (pos < len) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n_line = nl ? (size_t)(nl - s) : len - pos;
        pos += n_line + (nl ? 1 : 0);
        if (n_line > LR_IGNORE_MAX_LINE) {
            rc = lr_err_set(err, LR_EPATTERN, "line %u: longer than %d bytes", line,
                            LR_IGNORE_MAX_LINE);
            goto fail;
        }
        if (memchr(s, '\0', n_line)) {
            rc = lr_err_set(err, LR_EPATTERN, "line %u: contains a NUL byte", line);
            goto fail;
        }
        if (n_line && s[n_line - 1] == '\r')
            n_line--;
        /* Trailing spaces go unless escaped: "a\ " keeps one, "a\\ " keeps none. */
        while (n_line && s[n_line - 1] == ' ') {
            size_t bs = 0;
            while (bs < n_line - 1 && s[n_line - 2 - bs] == '\\')
                bs++;
            if (bs % 2 == 1)
                break;
            n_line--;
        }
        if (n_line == 0 || s[0] == '#')
            continue;
        if (n == LR_IGNORE_MAX_RULES) {
            rc = lr_err_set(err, LR_EPATTERN, "line %u: more than %d rules", line,
                            LR_IGNORE_MAX_RULES);
            goto fail;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            rules = lr_xreallocarray(rules, cap, sizeof(*rules));
        }
        if ((rc = compile_line(s, n_line, line, &rules[n], err)) < 0)
            goto fail;
        n++;
    }
    struct lr_ignore *ig = lr_xcalloc(1, sizeof(*ig));
    ig->rules = rules;
    ig->n = n;
    *out = ig;
    return 0;
fail:
    rules_free(rules, n);
    return rc;
}

int lr_ignore_load_at(int rootfd, struct lr_ignore **out, struct lr_err *err)
{
    *out = NULL;
    int fd = openat(rootfd, LR_IGNORE_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return lr_ignore_parse("", 0, out, err);
        if (errno == ELOOP) /* O_NOFOLLOW: it is a symlink */
            return lr_err_set(err, -errno,
                              "cannot open %s: it is a symbolic link, which is never followed "
                              "(make it a regular file)",
                              LR_IGNORE_FILE);
        return lr_err_set(err, -errno, "cannot open %s: %s", LR_IGNORE_FILE, strerror(errno));
    }
    int rc;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = lr_err_set(err, -errno, "cannot stat %s: %s", LR_IGNORE_FILE, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = lr_err_set(err, LR_EBADVAL, "%s is not a regular file", LR_IGNORE_FILE);
        goto out;
    }
    if (st.st_size > LR_IGNORE_MAX_FILE) {
        rc = lr_err_set(err, LR_ETOOBIG, "%s is larger than %d bytes", LR_IGNORE_FILE,
                        LR_IGNORE_MAX_FILE);
        goto out;
    }
    /* Read one byte past the cap so a file that grew after fstat is still caught. */
    size_t cap = (size_t)LR_IGNORE_MAX_FILE + 1, n = 0;
    buf = lr_xmalloc(cap);
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = lr_err_set(err, -errno, "cannot read %s: %s", LR_IGNORE_FILE, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            rc = lr_err_set(err, LR_ETOOBIG, "%s is larger than %d bytes", LR_IGNORE_FILE,
                            LR_IGNORE_MAX_FILE);
            goto out;
        }
    }
    rc = lr_ignore_parse(buf, n, out, err);
    if (rc < 0 && err && err->code == LR_EPATTERN) {
        char msg[LR_ERR_MSG_MAX];
        memcpy(msg, err->msg, sizeof(msg));
        lr_err_set(err, rc, "%s: %s", LR_IGNORE_FILE, msg);
    }
out:
    free(buf);
    close(fd);
    return rc;
}

int lr_ignore_load(const char *root, struct lr_ignore **out, struct lr_err *err)
{
    *out = NULL;
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lr_err_set(err, -errno, "cannot open folder %s: %s", root, strerror(errno));
    int rc = lr_ignore_load_at(fd, out, err);
    close(fd);
    return rc;
}

/* --- matching ------------------------------------------------------------------------------- */

static bool tok_match(const struct rule *r, const struct tok *t, uint8_t ch)
{
    switch (t->kind) {
    case T_LIT:
        return t->c == ch;
    case T_ANY:
        return true;
    case T_SET:
        return set_has(r->sets[t->set], ch);
    default:
        return false;
    }
}

/*
 * One component against one glob. Backtracking only to the most recent '*'
 * is enough (a later star can absorb whatever an earlier one would have), so
 * this takes at most about len(name) x len(glob) steps.
 */
static bool glob_match(const struct rule *r, const struct comp *cp, const uint8_t *s, size_t ns,
                       uint64_t *steps)
{
    const struct tok *p = r->toks + cp->off;
    size_t np = cp->n, pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
    while (si < ns) {
        (*steps)++;
        if (pi < np && p[pi].kind == T_STAR) {
            star_p = pi++;
            star_s = si;
        } else if (pi < np && tok_match(r, &p[pi], s[si])) {
            pi++;
            si++;
        } else if (star_p != SIZE_MAX) {
            pi = star_p + 1;
            si = ++star_s;
        } else {
            return false;
        }
    }
    while (pi < np && p[pi].kind == T_STAR)
        pi++;
    return pi == np;
}

/* Paths up to LR_IGNORE_MAX_LINE bytes are split without allocating. */
#define STACK_COMPS (LR_IGNORE_MAX_LINE / 2 + 1)

struct pcomp {
    uint32_t off, len;
};

/*
 * Append state j and its zero-length successors (globstars may match no
 * component) to the sorted state list. States are pushed in non-decreasing
 * order of origin and the closure adds consecutive states, so "not above the
 * last" means "already there".
 */
static void push_state(const struct rule *r, uint16_t *list, size_t *n, uint32_t j)
{
    for (;;) {
        if (*n == 0 || list[*n - 1] < j)
            list[(*n)++] = (uint16_t)j;
        if (j < r->ncomps && r->comps[j].kind == C_GLOBSTAR)
            j++;
        else
            return;
    }
}

struct matchctx {
    const char *path;
    const struct pcomp *pc;
    size_t npc;
    bool is_dir;
    size_t min_depth; /* 1 for full matching (every ancestor), npc for entry-only */
    uint64_t *steps;
};

/*
 * Run rule r as an NFA over the path's components. hit[depth - min_depth] is
 * set for each depth >= min_depth at which r matches the prefix of that many
 * components and applies (dir-only rules need a directory there).
 */
static void rule_run(const struct rule *r, const struct matchctx *m, uint8_t *hit)
{
    uint16_t a[MAX_COMPS + 1], b[MAX_COMPS + 1];
    uint16_t *cur = a, *next = b;
    size_t ncur = 0;
    push_state(r, cur, &ncur, 0);
    for (size_t k = 0; k < m->npc && ncur; k++) {
        const uint8_t *s = (const uint8_t *)m->path + m->pc[k].off;
        size_t ns = m->pc[k].len, nnext = 0;
        for (size_t i = 0; i < ncur; i++) {
            uint32_t j = cur[i];
            (*m->steps)++;
            if (j == r->ncomps)
                continue;
            const struct comp *cp = &r->comps[j];
            if (cp->kind == C_GLOBSTAR) {
                push_state(r, next, &nnext, j);
            } else if (cp->kind == C_GLOBSTAR1) {
                push_state(r, next, &nnext, j);
                push_state(r, next, &nnext, j + 1);
            } else if (glob_match(r, cp, s, ns, m->steps)) {
                push_state(r, next, &nnext, j + 1);
            }
        }
        uint16_t *t = cur;
        cur = next;
        next = t;
        ncur = nnext;
        size_t depth = k + 1;
        if (ncur && cur[ncur - 1] == r->ncomps && depth >= m->min_depth) {
            bool dir = depth < m->npc || m->is_dir;
            if (!r->dir_only || dir)
                hit[depth - m->min_depth] = 1;
        }
    }
}

static bool decide(const struct lr_ignore *ig, const char *path, size_t len, bool is_dir,
                   bool entry_only, uint64_t *steps, unsigned *line)
{
    if (line)
        *line = 0;
    /* Components; a path of len bytes has at most len/2 + 1 non-empty ones. */
    struct pcomp pc_stack[STACK_COMPS];
    uint8_t flags_stack[2 * STACK_COMPS];
    struct pcomp *pc = pc_stack;
    uint8_t *flags = flags_stack;
    size_t maxc = len / 2 + 1;
    if (maxc > STACK_COMPS) {
        pc = lr_xmallocarray(maxc, sizeof(*pc));
        flags = lr_xmallocarray(maxc, 2);
    }
    size_t npc = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && path[e] != '/')
            e++;
        if (e > i) {
            pc[npc].off = (uint32_t)i;
            pc[npc].len = (uint32_t)(e - i);
            npc++;
        }
        i = e + 1;
    }
    bool ignored = false;
    if (npc == 0)
        goto out;

    struct matchctx m = {.path = path,
                         .pc = pc,
                         .npc = npc,
                         .is_dir = is_dir,
                         .min_depth = entry_only ? npc : 1,
                         .steps = steps};
    size_t ndepth = npc - m.min_depth + 1;
    uint8_t *decided = flags, *hit = flags + ndepth;
    memset(decided, 0, ndepth);
    /* Last matching rule wins per depth, so walk rules backwards; the first
     * excluding decision at any depth (self or ancestor) settles it. */
    size_t nrules = ig ? ig->n : 0;
    for (size_t ri = nrules; ri-- > 0;) {
        const struct rule *r = &ig->rules[ri];
        memset(hit, 0, ndepth);
        rule_run(r, &m, hit);
        for (size_t d = 0; d < ndepth; d++) {
            if (!hit[d] || decided[d])
                continue;
            decided[d] = 1;
            if (!r->negate) {
                ignored = true;
                if (line)
                    *line = r->line;
                goto out;
            }
            /* Re-included at this depth: remember the innermost for explain(). */
            if (line && d == ndepth - 1)
                *line = r->line;
        }
    }
    /* The built-in first rule "/.landropicignore": each device keeps its own
     * rules unless a later `!` rule (decided[0]) opts the file in. */
    if (m.min_depth == 1 && !decided[0] && pc[0].len == sizeof(LR_IGNORE_FILE) - 1 &&
        memcmp(path + pc[0].off, LR_IGNORE_FILE, pc[0].len) == 0)
        ignored = true; /* *line stays 0: no line of the file decided */
out:
    if (pc != pc_stack) {
        free(pc);
        free(flags);
    }
    return ignored;
}

bool lr_ignore_match(const struct lr_ignore *ig, const char *relpath, size_t len, bool is_dir)
{
    uint64_t steps = 0;
    return decide(ig, relpath, len, is_dir, false, &steps, NULL);
}

bool lr_ignore_match_entry(const struct lr_ignore *ig, const char *relpath, size_t len, bool is_dir)
{
    uint64_t steps = 0;
    return decide(ig, relpath, len, is_dir, true, &steps, NULL);
}

bool lr_ignore_explain(const struct lr_ignore *ig, const char *relpath, size_t len, bool is_dir,
                       unsigned *line)
{
    uint64_t steps = 0;
    return decide(ig, relpath, len, is_dir, false, &steps, line);
}

bool lr__ignore_match_steps(const struct lr_ignore *ig, const char *relpath, size_t len,
                            bool is_dir, bool entry_only, uint64_t *steps)
{
    return decide(ig, relpath, len, is_dir, entry_only, steps, NULL);
}
