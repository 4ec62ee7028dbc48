/* qemu TCG plugin: counts guest instructions executed by every vCPU (= every guest thread in
 * qemu-user) and keeps the running total in a file, so a benchmark can read the count at the
 * start and end of a window while the program runs.
 *
 *   qemu-arm -plugin ./qemu-insn.so,out=/tmp/count -cpu cortex-a7 ./rillcast ...
 *
 * The file holds one decimal number and a newline; it is rewritten (write + rename, so a reader
 * never sees half a number) every 50 ms and once more at exit. Built by scripts/bench-arm.sh.
 *
 * Debian ships qemu's plugin support in qemu-user (not -static) but neither the contrib plugins
 * (libinsn.so) nor qemu-plugin.h, so the few declarations of the plugin API (docs/devel/tcg-
 * plugins.rst; include/qemu/qemu-plugin.h, API version 1 as in QEMU 7.2) are written out here.
 * QEMU checks qemu_plugin_version against its own supported range when loading.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

EXPORT int qemu_plugin_version = 1;

static _Atomic uint64_t insns;
static char out_path[4096];
static char tmp_path[4096 + 8];

static void write_count(void) {
    FILE *f = fopen(tmp_path, "w");
    if (!f) return;
    fprintf(f, "%llu\n", (unsigned long long)atomic_load(&insns));
    if (fclose(f) == 0) rename(tmp_path, out_path);
}

static void *writer(void *arg) {
    (void)arg;
    const struct timespec period = {0, 50 * 1000 * 1000};
    for (;;) {
        write_count();
        nanosleep(&period, NULL);
    }
    return NULL;
}

/* One call per executed translation block: adds its instruction count (atomic: qemu-user
 * runs guest threads in parallel). */
static void tb_exec(unsigned int vcpu_index, void *n_insns) {
    (void)vcpu_index;
    atomic_fetch_add_explicit(&insns, (uint64_t)(uintptr_t)n_insns, memory_order_relaxed);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    write_count();
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        }
    }
    if (!out_path[0]) {
        fprintf(stderr, "qemu-insn: missing plugin argument out=PATH\n");
        return -1;
    }
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path);
    pthread_t t;
    if (pthread_create(&t, NULL, writer, NULL) != 0) return -1;
    pthread_detach(t);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
