"""The `mqtt` source: subscribes to MQTT topic filters (wildcards allowed) in a persistent session with
QoS 1, and acknowledges each message only once every sink holds it (paho-mqtt 2.x, manual acks).

config.py is the config model and its build function, reader.py the `MqttReader`. docs/sources/mqtt.md
states what the broker does with messages that were not acknowledged, and what it does not promise.
"""
