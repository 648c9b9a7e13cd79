// Package simhook carries the constructors and accessors package sim
// keeps out of its exported API, because they take or return an
// internal/devicemodel type. Package sim fills the variables in when it is
// initialised; use them through internal/simmodel, which is typed.
package simhook

import "github.com/credloop/credloop/internal/devicemodel"

// Set by package sim's init, never changed after.
var (
	// NewDevice is sim.newDevice: (model, sim.DeviceOptions) → *sim.Device.
	NewDevice func(model *devicemodel.Device, opts any) any
	// NewMQTTDevice is sim.newMQTTDevice: (model, sim.MQTTDeviceOptions) →
	// *sim.MQTTDevice.
	NewMQTTDevice func(model *devicemodel.Device, opts any) any
	// Model returns the model of a *sim.Device or a *sim.MQTTDevice.
	Model func(dev any) *devicemodel.Device
)
