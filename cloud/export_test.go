package cloud

// CoAPSessions is the number of live DTLS sessions of c's CoAP endpoint.
func CoAPSessions(c *Cloud) int { return len(c.coap.Sessions()) }
