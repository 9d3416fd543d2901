# main.py for an ESP32: log the chip's temperature. Copy with the bricks:
#   mpremote mip install micropython/mini/package.json
#   mpremote cp boards/sensor_logger.py :lib/ + cp boards/esp32/boot.py boards/esp32/main.py :
import sensor_logger

try:
    import esp32
except ImportError:
    esp32 = None  # not on an ESP32 (the virtual board)


def read_temperature():
    if esp32 is None:
        return 21.5
    if hasattr(esp32, "mcu_temperature"):  # ESP32-S2, -S3, -C3, -C6: degrees Celsius
        return esp32.mcu_temperature()  # pyright: ignore[reportAttributeAccessIssue] (stubs of the original ESP32)
    return (esp32.raw_temperature() - 32) / 1.8  # the original ESP32 has only this, in degrees Fahrenheit


# Telemetry: a power cut loses at most the last 15 readings of the outbox,
# and the flash lasts ~11x longer than with a sync per reading (see README.md).
sensor_logger.run(read_temperature, outbox_sync=16, period_ms=1000)
