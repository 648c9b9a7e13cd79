package cloud

import (
	"context"
	"errors"
	"fmt"

	"github.com/credloop/credloop/cloud/internal/mqtt"
)

// ErrEndpointOff is returned for an operation that needs an endpoint the
// Cloud was started without (its address was "-").
var ErrEndpointOff = errors.New("cloud: endpoint is off")

// Rotation modes, as in the ESP32 certificate-rotation example.
const (
	// RotateKey: the cloud makes the new key and certificate and sends both.
	RotateKey = mqtt.RotateKey
	// RotateCSR: the cloud asks for a CSR; the key never leaves the device.
	RotateCSR = mqtt.RotateCSR
)

// RotateOptions says how to rotate a device's certificate.
type RotateOptions struct {
	// Mode is RotateKey or RotateCSR.
	Mode string
	// Broken makes the new certificate one no registered CA vouches for,
	// so the device cannot connect with it and must fall back to its old
	// credentials. With RotateCSR it applies to the device's next CSR.
	Broken bool
}

// Rotate asks a device to rotate its certificate over MQTT, on
// devices/<device>/certs/rotate. It waits, until ctx ends, for the device
// to be connected and subscribed to that topic.
func (c *Cloud) Rotate(ctx context.Context, project, device string, o RotateOptions) error {
	if c.mqtt == nil {
		return fmt.Errorf("rotate %s/%s: %w: mqtts", project, device, ErrEndpointOff)
	}
	return c.mqtt.Rotate(ctx, project, device, mqtt.RotateOptions{Mode: o.Mode, Broken: o.Broken})
}

// Publish sends payload on topic to the MQTT clients subscribed to it
// (QoS 1), as a backend would.
func (c *Cloud) Publish(topic string, payload []byte) error {
	if c.mqtt == nil {
		return fmt.Errorf("publish %q: %w: mqtts", topic, ErrEndpointOff)
	}
	return c.mqtt.Publish(topic, payload)
}
