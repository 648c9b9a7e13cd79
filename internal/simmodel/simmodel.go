// Package simmodel builds simulated devices around a devicemodel.Device
// made by the caller, and hands back a device's model: what credloop's
// board emulators, scenario runner and tests need beyond sim's public API,
// which builds devices from plain values (sim.Identity) only.
package simmodel

import (
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simhook"
	"github.com/credloop/credloop/sim"
)

// NewDevice returns a powered-off DTLS/CoAP device running model; o's
// Identity is ignored.
func NewDevice(model *devicemodel.Device, o sim.DeviceOptions) *sim.Device {
	return simhook.NewDevice(model, o).(*sim.Device)
}

// NewMQTTDevice returns a powered-off MQTT device running model; o's
// Identity is ignored. A nil model makes a device whose Start fails.
func NewMQTTDevice(model *devicemodel.Device, o sim.MQTTDeviceOptions) *sim.MQTTDevice {
	return simhook.NewMQTTDevice(model, o).(*sim.MQTTDevice)
}

// Of returns the model a device runs.
func Of[D *sim.Device | *sim.MQTTDevice](d D) *devicemodel.Device {
	return simhook.Model(d)
}
