// Link support for LittleFS2 + FAT on ports/qemu (tools/firmware.py builds it).
// The emulated boards have no real-time clock: file times count from
// 2026-01-01 00:00:00 plus the milliseconds since boot. Nothing in the bricks
// reads file times; this only satisfies the linker.
#include "py/mphal.h"
#include "py/runtime.h"

// shared/timeutils is not in this port's source list; compile it here
// rather than patch MicroPython's Makefile.
#include "shared/timeutils/timeutils.c"

#if MICROPY_VFS_FAT
#include "lib/oofatfs/ff.h"
#endif

// 2026-01-01T00:00:00Z in seconds since 1970.
#define MINI_HAL_BOOT_UNIX_SECONDS (1767225600ULL)

uint64_t mp_hal_time_ns(void) {
    return (MINI_HAL_BOOT_UNIX_SECONDS * 1000ULL + mp_hal_ticks_ms()) * 1000000ULL;
}

#if MICROPY_VFS_FAT
DWORD get_fattime(void) {
    // FAT timestamp: years since 1980, month, day, hours, minutes, seconds / 2.
    mp_uint_t seconds = mp_hal_ticks_ms() / 1000;
    mp_uint_t minutes = seconds / 60;
    mp_uint_t hours = minutes / 60;
    return ((DWORD)(2026 - 1980) << 25) | ((DWORD)1 << 21) | ((DWORD)1 << 16)
           | ((DWORD)(hours % 24) << 11) | ((DWORD)(minutes % 60) << 5) | ((DWORD)((seconds % 60) / 2));
}
#endif
