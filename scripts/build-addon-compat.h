/*
 * Force-included into every file of the SQLite addon build. The cross toolchains link against Debian's glibc,
 * whose newest symbol versions (pthread and dl* moved into libc in 2.34, stat64 in 2.33, exp/log/pow in 2.29)
 * would make the addon refuse to load on older systems such as Raspberry Pi OS bullseye (glibc 2.31). Every
 * one of these functions also exists at the arch's first glibc version, so references are bound to that one;
 * stat64 and friends did not exist as functions before 2.33 and are routed to the __xstat64 family they
 * replaced. On the C++ side, GCC 12 calls std::__throw_bad_array_new_length, which libstdc++ only exports
 * since GLIBCXX_3.4.29 (bullseye has 3.4.28): the addon carries its own. scripts/package-floor.ts checks
 * the result.
 */
#ifndef FLEETLET_BUILD_ADDON_COMPAT_H
#define FLEETLET_BUILD_ADDON_COMPAT_H

#if defined(__x86_64__)
#define FLEETLET_GLIBC_BASE "GLIBC_2.2.5"
#define FLEETLET_STAT_VER 1
#elif defined(__aarch64__)
#define FLEETLET_GLIBC_BASE "GLIBC_2.17"
#define FLEETLET_STAT_VER 0
#elif defined(__arm__)
#define FLEETLET_GLIBC_BASE "GLIBC_2.4"
#define FLEETLET_STAT_VER 3
#else
#error "unsupported architecture"
#endif

#define FLEETLET_PIN(symbol) __asm__(".symver " #symbol "," #symbol "@" FLEETLET_GLIBC_BASE);

FLEETLET_PIN(pthread_create)
FLEETLET_PIN(pthread_join)
FLEETLET_PIN(pthread_once)
FLEETLET_PIN(pthread_mutex_trylock)
FLEETLET_PIN(pthread_mutexattr_init)
FLEETLET_PIN(pthread_mutexattr_settype)
FLEETLET_PIN(pthread_mutexattr_destroy)
FLEETLET_PIN(dlopen)
FLEETLET_PIN(dlsym)
FLEETLET_PIN(dlerror)
FLEETLET_PIN(dlclose)
FLEETLET_PIN(exp)
FLEETLET_PIN(log)
FLEETLET_PIN(log2)
FLEETLET_PIN(pow)
FLEETLET_PIN(__xstat64)
FLEETLET_PIN(__lxstat64)
FLEETLET_PIN(__fxstat64)

#ifndef __cplusplus
/* No system header here: SQLite picks its feature macros (_GNU_SOURCE) before its first include. */
struct stat64;
extern int __xstat64(int version, const char *path, struct stat64 *buf);
extern int __lxstat64(int version, const char *path, struct stat64 *buf);
extern int __fxstat64(int version, int fd, struct stat64 *buf);
__attribute__((visibility("hidden"))) int stat64(const char *path, struct stat64 *buf) {
  return __xstat64(FLEETLET_STAT_VER, path, buf);
}
__attribute__((visibility("hidden"))) int lstat64(const char *path, struct stat64 *buf) {
  return __lxstat64(FLEETLET_STAT_VER, path, buf);
}
__attribute__((visibility("hidden"))) int fstat64(int fd, struct stat64 *buf) {
  return __fxstat64(FLEETLET_STAT_VER, fd, buf);
}
#endif

#ifdef __cplusplus
/* The addon is built without exceptions, where any throw ends the process: abort does the same. */
namespace std {
[[noreturn]] inline void __throw_bad_array_new_length() { __builtin_abort(); }
}
#endif

#endif
