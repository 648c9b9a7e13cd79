package cloud

// CoAPSessions is the number of live DTLS sessions of c's CoAP endpoint.
func CoAPSessions(c *Cloud) int { return len(c.coap.Sessions()) }

// CoAPHandshakes reports how many handshakes credloop's own PSK server and
// pion were given by c's CoAP endpoint.
func CoAPHandshakes(c *Cloud) (own, pion uint64) { return c.coap.Handshakes() }

// CoAPNotify notifies the observers of the device's path on c's CoAP
// endpoint.
func CoAPNotify(c *Cloud, project, device, path string) int {
	return c.coap.Notify(project, device, path)
}

// CoAPObservers is the number of observers registered on c's CoAP
// endpoint.
func CoAPObservers(c *Cloud) int { return c.coap.Observers() }
