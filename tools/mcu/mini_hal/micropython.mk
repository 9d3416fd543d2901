# A USER_C_MODULES module for ports/qemu (tools/firmware.py): the clock and
# timeutils symbols that MICROPY_VFS_LFS2=1 MICROPY_VFS_FAT=1 need to link on a
# port that has no real-time clock. It adds no Python module.
MINI_HAL_DIR := $(USERMOD_DIR)
SRC_USERMOD_C += $(MINI_HAL_DIR)/mini_hal.c
