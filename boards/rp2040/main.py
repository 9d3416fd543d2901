# main.py for an RP2040 (Raspberry Pi Pico): log the on-chip temperature sensor.
#   mpremote mip install micropython/mini/package.json
#   mpremote cp boards/sensor_logger.py :lib/ + cp boards/rp2040/boot.py boards/rp2040/main.py :
import sensor_logger

try:
    import machine
    _adc = machine.ADC(4)  # the internal temperature sensor

    def read_temperature():
        volts = _adc.read_u16() * 3.3 / 65535
        return round(27 - (volts - 0.706) / 0.001721, 1)
except (ImportError, AttributeError):
    def read_temperature():
        return 21.5  # not on an RP2040 (the virtual board)

# 256-byte flash pages make each sync dearer than on ESP32: batch the telemetry.
sensor_logger.run(read_temperature, outbox_sync=16, period_ms=1000)
