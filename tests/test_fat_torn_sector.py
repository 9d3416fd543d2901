# The control experiment behind the power-cut sweeps' FAT hazard rule
# (tests/mp/fat_torn_sector.py): with no brick involved, a torn sector write on FAT
# loses lines of a plain file whose flush had returned, and on LittleFS it never does.
from mpdriver import assert_all_passed


def test_torn_fat_sector_loses_flushed_plain_file_data_and_littlefs_does_not():
    out = assert_all_passed(["tests/mp/fat_torn_sector.py"])
    print(out)
