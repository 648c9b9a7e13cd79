package cloud

// CoAPSessions is the number of live DTLS sessions of c's CoAP endpoint.
func CoAPSessions(c *Cloud) int { return len(c.coap.Sessions()) }

// CoAPHandshakes reports how many handshakes credloop's own PSK server and
// pion were given by c's CoAP endpoint.
func CoAPHandshakes(c *Cloud) (own, pion uint64) { return c.coap.Handshakes() }
