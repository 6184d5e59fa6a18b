/*
 * A QEMU TCG plugin for user-mode emulation (qemu-arm -plugin ...) that
 * counts the guest instructions a program executes and prints the total on
 * standard error when it exits, as "guest-insns N". hack/argon-arm.sh builds
 * it and uses the count to compare an argon2id check across architectures:
 * unlike an emulated time, it is the same on any host.
 *
 * It declares the few plugin API functions it uses instead of including
 * qemu-plugin.h, which Debian does not ship. QEMU_PLUGIN_API is the plugin
 * API version it claims; the script tries a few until QEMU accepts one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef QEMU_PLUGIN_API
#define QEMU_PLUGIN_API 1
#endif

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };

typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*vcpu_udata_cb)(unsigned int, void *);
typedef void (*udata_cb)(qemu_plugin_id_t, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, vcpu_udata_cb,
					  enum qemu_plugin_cb_flags, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = QEMU_PLUGIN_API;

static uint64_t insns;

/* exec runs each time a translated block runs; n is its instruction count.
 * Go programs run several threads, hence the atomic add. */
static void exec(unsigned int vcpu, void *n)
{
	(void)vcpu;
	__atomic_fetch_add(&insns, (uint64_t)(uintptr_t)n, __ATOMIC_RELAXED);
}

static void translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	(void)id;
	qemu_plugin_register_vcpu_tb_exec_cb(tb, exec, QEMU_PLUGIN_CB_NO_REGS,
					     (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

static void done(qemu_plugin_id_t id, void *p)
{
	(void)id;
	(void)p;
	fprintf(stderr, "guest-insns %llu\n", (unsigned long long)__atomic_load_n(&insns, __ATOMIC_RELAXED));
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info,
							      int argc, char **argv)
{
	(void)info;
	(void)argc;
	(void)argv;
	qemu_plugin_register_vcpu_tb_trans_cb(id, translate);
	qemu_plugin_register_atexit_cb(id, done, NULL);
	return 0;
}
