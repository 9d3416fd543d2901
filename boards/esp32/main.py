# main.py for an ESP32: log the chip's temperature. Copy with the bricks:
#   mpremote mip install micropython/mini/package.json
#   mpremote cp boards/sensor_logger.py :lib/ + cp boards/esp32/boot.py boards/esp32/main.py :
import sensor_logger

try:
    import esp32

    def read_temperature():
        return esp32.mcu_temperature()  # recent ESP32 variants; older ones: (esp32.raw_temperature() - 32) / 1.8
except (ImportError, AttributeError):
    def read_temperature():
        return 21.5  # not on an ESP32 (the virtual board)

# Telemetry: a power cut loses at most the last 15 readings of the outbox,
# and the flash lasts ~11x longer than with a sync per reading (see README.md).
sensor_logger.run(read_temperature, outbox_sync=16, period_ms=1000)
