package cloud_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/credloop/credloop/cloud"
)

// A cloud in memory on random loopback ports, with a fresh CA: create a
// project, issue a device certificate from the cloud's CA and check the
// MQTT endpoint's server certificate against the CA's root.
func ExampleNew() {
	c, err := cloud.New(cloud.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		fmt.Println(err)
		return
	}
	dc, err := c.CA().IssueDevice("acme", "dev-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("issued by", dc.TLS.Leaf.Issuer.CommonName)

	// The server certificate chains to the CA's root.
	conn, err := tls.Dial("tcp", c.Addrs().MQTTS, &tls.Config{
		RootCAs:      c.CA().RootPool(),
		ServerName:   "localhost",
		Certificates: []tls.Certificate{dc.TLS},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	fmt.Println("server", conn.ConnectionState().PeerCertificates[0].Subject.CommonName)
	// Output:
	// issued by credloop Intermediate CA
	// server localhost
}
